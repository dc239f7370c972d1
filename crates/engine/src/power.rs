//! Battery and metered-network state behind one trait. Linux: UPower (`OnBattery`, the display device's
//! `Percentage`) and NetworkManager (`Metered`) on the system bus, read with zbus. The bus address follows
//! `DBUS_SYSTEM_BUS_ADDRESS` (how tests point it at a private bus). macOS and Windows: not implemented yet; they
//! report "unknown", which never pauses (docs/limits.md).

use crate::limits::PowerState;

#[async_trait::async_trait]
pub trait PowerMonitor: Send + Sync + 'static {
    /// The current state; what cannot be read is `None`.
    async fn state(&self) -> PowerState;
}

/// The monitor for this OS.
pub fn system_monitor() -> std::sync::Arc<dyn PowerMonitor> {
    #[cfg(target_os = "linux")]
    {
        std::sync::Arc::new(linux::DbusPowerMonitor::system())
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::sync::Arc::new(Unknown)
    }
}

/// Reports nothing known: never pauses. The macOS (IOKit power sources, `NWPath.isExpensive`) and Windows
/// (`GetSystemPowerStatus`, `INetworkCostManager`) monitors are not implemented yet.
#[derive(Debug, Default)]
pub struct Unknown;

#[async_trait::async_trait]
impl PowerMonitor for Unknown {
    async fn state(&self) -> PowerState {
        PowerState::default()
    }
}

#[cfg(target_os = "linux")]
pub mod linux {
    use super::*;

    const UPOWER: &str = "org.freedesktop.UPower";
    const UPOWER_PATH: &str = "/org/freedesktop/UPower";
    const UPOWER_DISPLAY_DEVICE: &str = "/org/freedesktop/UPower/devices/DisplayDevice";
    const UPOWER_DEVICE: &str = "org.freedesktop.UPower.Device";
    const NM: &str = "org.freedesktop.NetworkManager";
    const NM_PATH: &str = "/org/freedesktop/NetworkManager";

    /// NetworkManager's `NMMetered`: 1 yes, 2 no, 3 guessed yes, 4 guessed no, 0 unknown.
    pub fn metered_from_nm(value: u32) -> Option<bool> {
        match value {
            1 | 3 => Some(true),
            2 | 4 => Some(false),
            _ => None,
        }
    }

    /// Reads UPower and NetworkManager over D-Bus; the connection is made on first use and again after a failure.
    pub struct DbusPowerMonitor {
        /// `None`: the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the default socket).
        address: Option<String>,
        connection: tokio::sync::Mutex<Option<zbus::Connection>>,
    }

    impl DbusPowerMonitor {
        pub fn system() -> DbusPowerMonitor {
            DbusPowerMonitor {
                address: None,
                connection: tokio::sync::Mutex::new(None),
            }
        }

        pub fn with_address(address: &str) -> DbusPowerMonitor {
            DbusPowerMonitor {
                address: Some(address.to_string()),
                connection: tokio::sync::Mutex::new(None),
            }
        }

        async fn connect(&self) -> zbus::Result<zbus::Connection> {
            match &self.address {
                None => zbus::Connection::system().await,
                Some(address) => {
                    zbus::connection::Builder::address(address.as_str())?
                        .build()
                        .await
                }
            }
        }

        async fn property<T>(
            conn: &zbus::Connection,
            dest: &str,
            path: &str,
            iface: &str,
            name: &str,
        ) -> Option<T>
        where
            T: TryFrom<zbus::zvariant::OwnedValue>,
            T::Error: Into<zbus::Error>,
        {
            let proxy =
                zbus::Proxy::new(conn, dest.to_string(), path.to_string(), iface.to_string())
                    .await
                    .ok()?;
            proxy.get_property::<T>(name).await.ok()
        }
    }

    #[async_trait::async_trait]
    impl PowerMonitor for DbusPowerMonitor {
        async fn state(&self) -> PowerState {
            let mut slot = self.connection.lock().await;
            if slot.is_none() {
                match self.connect().await {
                    Ok(conn) => *slot = Some(conn),
                    Err(err) => {
                        tracing::debug!(%err, "no system bus: battery and metered state unknown");
                        return PowerState::default();
                    }
                }
            }
            let conn = slot.as_ref().expect("connected above");
            let on_battery: Option<bool> =
                Self::property(conn, UPOWER, UPOWER_PATH, UPOWER, "OnBattery").await;
            let percent: Option<f64> = Self::property(
                conn,
                UPOWER,
                UPOWER_DISPLAY_DEVICE,
                UPOWER_DEVICE,
                "Percentage",
            )
            .await;
            let metered: Option<u32> = Self::property(conn, NM, NM_PATH, NM, "Metered").await;
            if on_battery.is_none() && metered.is_none() {
                // Neither service answered: reconnect next time (the bus may have restarted).
                *slot = None;
            }
            PowerState {
                on_battery,
                battery_percent: percent.map(|p| p.clamp(0.0, 100.0).round() as u8),
                metered: metered.and_then(metered_from_nm),
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::DbusPowerMonitor;
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    struct FakeUPower {
        on_battery: bool,
    }

    #[zbus::interface(name = "org.freedesktop.UPower")]
    impl FakeUPower {
        #[zbus(property)]
        fn on_battery(&self) -> bool {
            self.on_battery
        }
    }

    struct FakeDisplayDevice {
        percentage: f64,
    }

    #[zbus::interface(name = "org.freedesktop.UPower.Device")]
    impl FakeDisplayDevice {
        #[zbus(property)]
        fn percentage(&self) -> f64 {
            self.percentage
        }
    }

    struct FakeNetworkManager {
        metered: u32,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager")]
    impl FakeNetworkManager {
        #[zbus(property)]
        fn metered(&self) -> u32 {
            self.metered
        }
    }

    /// A private bus: `dbus-daemon --session` on its own socket, killed when dropped.
    struct PrivateBus {
        child: std::process::Child,
        address: String,
    }

    impl PrivateBus {
        fn start() -> Option<PrivateBus> {
            let mut child = Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let mut line = String::new();
            BufReader::new(child.stdout.take()?)
                .read_line(&mut line)
                .ok()?;
            let address = line.trim().to_string();
            if address.is_empty() {
                let _ = child.kill();
                return None;
            }
            Some(PrivateBus { child, address })
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// UPower and NetworkManager on a private bus: switching to battery (below the threshold) or to a metered
    /// network pauses with that reason; switching back resumes.
    #[tokio::test]
    async fn battery_and_metered_from_a_private_bus_pause_and_resume() {
        let bus = PrivateBus::start()
            .expect("dbus-daemon (Debian package `dbus`) is needed for this test");
        let service = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name("org.freedesktop.UPower")
            .unwrap()
            .name("org.freedesktop.NetworkManager")
            .unwrap()
            .serve_at("/org/freedesktop/UPower", FakeUPower { on_battery: false })
            .unwrap()
            .serve_at(
                "/org/freedesktop/UPower/devices/DisplayDevice",
                FakeDisplayDevice { percentage: 25.0 },
            )
            .unwrap()
            .serve_at(
                "/org/freedesktop/NetworkManager",
                FakeNetworkManager { metered: 2 },
            )
            .unwrap()
            .build()
            .await
            .unwrap();

        let monitor = DbusPowerMonitor::with_address(&bus.address);
        let limits = crate::LimitsConfig::default(); // pause on battery at ≤ 30 %, pause on metered
        let reasons = |state: PowerState| crate::limits::pause_reasons(false, &limits, &state, 0);

        let state = monitor.state().await;
        assert_eq!(
            state,
            PowerState {
                on_battery: Some(false),
                battery_percent: Some(25),
                metered: Some(false)
            }
        );
        assert!(reasons(state).is_empty());

        let upower = service
            .object_server()
            .interface::<_, FakeUPower>("/org/freedesktop/UPower")
            .await
            .unwrap();
        upower.get_mut().await.on_battery = true;
        let state = monitor.state().await;
        assert_eq!(state.on_battery, Some(true));
        assert_eq!(reasons(state), vec![crate::limits::REASON_BATTERY]);

        upower.get_mut().await.on_battery = false;
        let nm = service
            .object_server()
            .interface::<_, FakeNetworkManager>("/org/freedesktop/NetworkManager")
            .await
            .unwrap();
        nm.get_mut().await.metered = 3; // guessed yes (a phone hotspot)
        let state = monitor.state().await;
        assert_eq!(reasons(state), vec![crate::limits::REASON_METERED]);

        nm.get_mut().await.metered = 4;
        assert!(
            reasons(monitor.state().await).is_empty(),
            "back on an unmetered network: seeding"
        );

        // The services go away: unknown, which never pauses.
        drop((upower, nm));
        service.close().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let state = monitor.state().await;
        assert_eq!(state.on_battery, None);
        assert!(reasons(state).is_empty());
    }
}
