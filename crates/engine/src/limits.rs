//! Limits and policy: which caps are in force (normal or alternative, by the weekly schedule in local time), and
//! whether seeding is paused and why (the user, battery, a metered network, the monthly upload cap). The decisions
//! are pure functions of a [`LocalTime`] from an injected [`Clock`], the config, the [`PowerState`] and the month's
//! upload count, so tests can move time; [`run`] applies them to the node every [`TICK`].
//! See docs/limits.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AltSchedule, LimitsConfig, WEEKDAYS};
use crate::engine::Shared;
use crate::status::EngineEvent;

/// How often the policy is re-evaluated and the month's upload counted while traffic moves.
pub const TICK: Duration = Duration::from_millis(250);
/// The same after a tick in which no byte moved: an idle daemon wakes for the policy once a second, not four times
/// (its time windows have minute resolution; pause, resume, config and power changes apply at once anyway). A
/// transfer that starts is counted from the next tick, at most this late.
pub const IDLE_TICK: Duration = Duration::from_secs(1);
/// How often the power state (battery, metered) is read.
pub const POWER_POLL: Duration = Duration::from_secs(2);
/// How often the month's upload count is written when it changed (and at shutdown).
pub const USAGE_SAVE_EVERY: Duration = Duration::from_secs(5);
/// The file in the data dir that keeps the month's upload count.
pub const MONTHLY_USAGE_FILE: &str = "monthly-upload.json";

pub const REASON_USER: &str = "user";
pub const REASON_SCHEDULE: &str = "schedule";
pub const REASON_BATTERY: &str = "on battery";
pub const REASON_METERED: &str = "metered network";
pub const REASON_MONTHLY_CAP: &str = "monthly cap reached";

/// A moment in local time, as much as the policy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
    /// 0 = Monday … 6 = Sunday (the order of [`WEEKDAYS`]).
    pub weekday: u32,
    /// Minutes after local midnight.
    pub minute_of_day: u32,
}

impl LocalTime {
    /// `YYYY-MM`: the key the monthly upload count is kept under.
    pub fn month_key(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// `YYYY-MM-DD`: the key the day's traffic is counted under.
    pub fn day_key(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Where the policy reads the time from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> LocalTime;
}

/// The machine's local time (time zone and DST from the OS).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> LocalTime {
        use chrono::{Datelike, Timelike};
        let now = chrono::Local::now();
        LocalTime {
            year: now.year(),
            month: now.month(),
            day: now.day(),
            weekday: now.weekday().num_days_from_monday(),
            minute_of_day: now.hour() * 60 + now.minute(),
        }
    }
}

/// A clock tests set by hand.
#[derive(Debug)]
pub struct TestClock(Mutex<LocalTime>);

impl TestClock {
    pub fn new(at: LocalTime) -> TestClock {
        TestClock(Mutex::new(at))
    }
    pub fn set(&self, at: LocalTime) {
        *self.0.lock().unwrap() = at;
    }
}

impl Clock for TestClock {
    fn now(&self) -> LocalTime {
        *self.0.lock().unwrap()
    }
}

/// Whether the alternative limits apply at `t`. A window whose end is before its start runs past midnight and
/// belongs to the day it starts on.
pub fn schedule_active(schedule: &AltSchedule, t: LocalTime) -> bool {
    if !schedule.enabled {
        return false;
    }
    let listed = |weekday: u32| {
        schedule
            .days
            .iter()
            .any(|d| d == WEEKDAYS[(weekday % 7) as usize])
    };
    let (start, end, m) = (
        schedule.start_minute_of_day,
        schedule.end_minute_of_day,
        t.minute_of_day,
    );
    if start < end {
        listed(t.weekday) && m >= start && m < end
    } else {
        (listed(t.weekday) && m >= start) || (listed(t.weekday + 6) && m < end)
    }
}

/// The caps in force at `t`: (upload, download) bytes per second (0 = unlimited) and whether they are the
/// alternative ones.
pub fn active_rates(limits: &LimitsConfig, t: LocalTime) -> (u64, u64, bool) {
    if schedule_active(&limits.alt_schedule, t) {
        (
            limits.alt_upload_bytes_per_sec,
            limits.alt_download_bytes_per_sec,
            true,
        )
    } else {
        (
            limits.upload_bytes_per_sec,
            limits.download_bytes_per_sec,
            false,
        )
    }
}

/// What the OS says about power and the network; `None` = unknown (no UPower, no NetworkManager, not implemented).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerState {
    pub on_battery: Option<bool>,
    pub battery_percent: Option<u8>,
    pub metered: Option<bool>,
}

/// Every reason seeding is paused now, most specific last; empty = seeding.
pub fn pause_reasons(
    user_paused: bool,
    limits: &LimitsConfig,
    power: &PowerState,
    month_uploaded: u64,
) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    if user_paused {
        reasons.push(REASON_USER);
    }
    if limits.pause_on_battery && power.on_battery == Some(true) {
        let threshold = limits.pause_on_battery_below_percent;
        // Unknown charge on battery: be conservative and pause.
        if threshold >= 100 || power.battery_percent.is_none_or(|p| p <= threshold) {
            reasons.push(REASON_BATTERY);
        }
    }
    if limits.pause_on_metered && power.metered == Some(true) {
        reasons.push(REASON_METERED);
    }
    if limits.monthly_upload_bytes > 0 && month_uploaded >= limits.monthly_upload_bytes {
        reasons.push(REASON_MONTHLY_CAP);
    }
    reasons
}

/// The upload counted in one calendar month (local time), kept in [`MONTHLY_USAGE_FILE`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthlyUsage {
    /// `YYYY-MM`.
    pub month: String,
    pub uploaded_bytes: u64,
}

impl MonthlyUsage {
    /// Starts a new count when `t` is in another month than the one counted.
    pub fn roll(&mut self, t: LocalTime) -> bool {
        let key = t.month_key();
        if self.month != key {
            self.month = key;
            self.uploaded_bytes = 0;
            true
        } else {
            false
        }
    }

    pub fn add(&mut self, t: LocalTime, bytes: u64) {
        self.roll(t);
        self.uploaded_bytes = self.uploaded_bytes.saturating_add(bytes);
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(MONTHLY_USAGE_FILE)
    }

    /// A missing or unreadable file starts from zero (with a warning for the unreadable one).
    pub fn load(data_dir: &Path) -> MonthlyUsage {
        crate::fs_util::read_json_or_default(&MonthlyUsage::path(data_dir), "monthly upload count")
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        crate::fs_util::write_json_atomically(&MonthlyUsage::path(data_dir), self)
    }
}

/// What the policy decided last, for status.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyState {
    pub power: PowerState,
    pub month: MonthlyUsage,
    /// Upload and download today, this month and all time, for the dashboard.
    pub traffic: crate::traffic::TrafficTotals,
    /// The month's upload or the traffic totals changed since they were last written.
    pub usage_dirty: bool,
    pub reasons: Vec<&'static str>,
    pub upload_bytes_per_sec: u64,
    pub download_bytes_per_sec: u64,
    pub alt_active: bool,
    /// The node's upload and download counters at the last tick.
    pub last_uploaded_total: u64,
    pub last_downloaded_total: u64,
}

/// One artifact in pkgseed's own store, for eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    pub id: u64,
    pub size_bytes: u64,
    /// When it was last served (any monotonic stamp; 0 = never).
    pub last_served: u64,
}

/// Which artifacts to evict so the store fits `cap_bytes` (0 = no cap): least recently served first (never served
/// before anything served; ties by id, oldest first). Returns ids in eviction order; what remains is ≤ the cap.
pub fn eviction_order(artifacts: &[StoredArtifact], cap_bytes: u64) -> Vec<u64> {
    if cap_bytes == 0 {
        return Vec::new();
    }
    evict_to_fit(artifacts, cap_bytes)
}

/// [`eviction_order`] where `budget_bytes` is a real budget (0 = nothing may stay).
pub fn evict_to_fit(artifacts: &[StoredArtifact], budget_bytes: u64) -> Vec<u64> {
    let cap_bytes = budget_bytes;
    let mut total: u64 = artifacts.iter().map(|a| a.size_bytes).sum();
    let mut order: Vec<&StoredArtifact> = artifacts.iter().collect();
    order.sort_by_key(|a| (a.last_served, a.id));
    let mut evict = Vec::new();
    for a in order {
        if total <= cap_bytes {
            break;
        }
        total -= a.size_bytes;
        evict.push(a.id);
    }
    evict
}

/// Re-evaluates the policy at `now` and applies it to the node: caps, pause and its reasons. Cheap; called every
/// tick and right after the user pauses, resumes or changes the config.
pub(crate) fn apply(shared: &Shared, now: LocalTime) {
    let limits = shared.config.lock().unwrap().limits.clone();
    let user_paused = shared.paused.load(Ordering::SeqCst);
    let (reasons, up, down) = {
        let mut policy = shared.policy.lock().unwrap();
        // Both, even when the first changes: `|` does not short-circuit.
        if policy.month.roll(now) | policy.traffic.roll(now) {
            policy.usage_dirty = true;
        }
        let reasons = pause_reasons(
            user_paused,
            &limits,
            &policy.power,
            policy.month.uploaded_bytes,
        );
        let (up, down, alt) = active_rates(&limits, now);
        policy.reasons = reasons.clone();
        policy.upload_bytes_per_sec = up;
        policy.download_bytes_per_sec = down;
        policy.alt_active = alt;
        (reasons, up, down)
    };
    shared.node.set_rate_limits(up, down);
    let paused = !reasons.is_empty();
    if shared.node.is_paused() != paused {
        tracing::info!(paused, reasons = ?reasons, "seeding {}", if paused { "paused" } else { "resumed" });
        shared.node.set_paused(paused);
        shared.emit(EngineEvent::PausedChanged { paused });
    }
}

/// Counts the month's upload and applies the policy every [`TICK`] ([`IDLE_TICK`] while no byte moves); saves the
/// count every [`USAGE_SAVE_EVERY`].
pub(crate) async fn run(shared: Arc<Shared>, clock: Arc<dyn Clock>) {
    let mut last_save = tokio::time::Instant::now();
    let mut period = TICK;
    loop {
        tokio::time::sleep(period).await;
        let now = clock.now();
        // Bitswap bytes plus the TCP overhead charged to the caps: the month and the totals count all traffic.
        let (uploaded, downloaded) = {
            let (bitswap_up, bitswap_down) = shared.node.traffic();
            let (overhead_up, overhead_down) = shared.node.overhead_traffic();
            (bitswap_up + overhead_up, bitswap_down + overhead_down)
        };
        {
            let mut policy = shared.policy.lock().unwrap();
            let up_delta = uploaded.saturating_sub(policy.last_uploaded_total);
            let down_delta = downloaded.saturating_sub(policy.last_downloaded_total);
            policy.last_uploaded_total = uploaded;
            policy.last_downloaded_total = downloaded;
            if up_delta > 0 {
                policy.month.add(now, up_delta);
            }
            if up_delta > 0 || down_delta > 0 {
                policy.traffic.add(now, up_delta, down_delta);
                policy.usage_dirty = true;
                period = TICK;
            } else {
                period = IDLE_TICK;
            }
        }
        apply(&shared, now);
        if last_save.elapsed() >= USAGE_SAVE_EVERY {
            last_save = tokio::time::Instant::now();
            save_usage(&shared);
            shared.artifact_store.save_served(None);
        }
    }
}

/// Writes the month's upload count and the traffic totals if they changed since the last write.
pub(crate) fn save_usage(shared: &Shared) {
    let (month, traffic) = {
        let mut policy = shared.policy.lock().unwrap();
        if !policy.usage_dirty {
            return;
        }
        policy.usage_dirty = false;
        (policy.month.clone(), policy.traffic.clone())
    };
    let data_dir = &shared.dirs.data_dir;
    let saved = month
        .save(data_dir)
        .map_err(|err| format!("the monthly upload count: {err}"))
        .and_then(|()| {
            traffic
                .save(data_dir)
                .map_err(|err| format!("the traffic totals: {err}"))
        });
    if let Err(err) = saved {
        tracing::warn!("cannot save {err}");
        shared.policy.lock().unwrap().usage_dirty = true;
    }
}

/// Reads the power state every [`POWER_POLL`] into the policy state.
pub(crate) async fn poll_power(shared: Arc<Shared>, monitor: Arc<dyn crate::power::PowerMonitor>) {
    loop {
        let state: PowerState = tokio::time::timeout(POWER_POLL, monitor.state())
            .await
            .unwrap_or_default();
        let changed = {
            let mut policy = shared.policy.lock().unwrap();
            std::mem::replace(&mut policy.power, state) != state
        };
        if changed {
            tracing::info!(?state, "power state changed");
            apply(&shared, shared.clock.now());
        }
        tokio::time::sleep(POWER_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(weekday: u32, hour: u32, minute: u32) -> LocalTime {
        LocalTime {
            year: 2026,
            month: 11,
            day: 30,
            weekday,
            minute_of_day: hour * 60 + minute,
        }
    }

    fn limits_with_schedule(days: &[&str], start: u32, end: u32) -> LimitsConfig {
        LimitsConfig {
            upload_bytes_per_sec: 0,
            download_bytes_per_sec: 0,
            alt_upload_bytes_per_sec: 50_000,
            alt_download_bytes_per_sec: 100_000,
            alt_schedule: AltSchedule {
                enabled: true,
                days: days.iter().map(|d| d.to_string()).collect(),
                start_minute_of_day: start,
                end_minute_of_day: end,
            },
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn the_schedule_switches_the_active_limits_as_the_clock_moves() {
        let limits = limits_with_schedule(&["mon", "tue", "wed", "thu", "fri"], 9 * 60, 18 * 60);
        let clock = TestClock::new(at(0, 8, 59));
        assert_eq!(active_rates(&limits, clock.now()), (0, 0, false));
        clock.set(at(0, 9, 0));
        assert_eq!(active_rates(&limits, clock.now()), (50_000, 100_000, true));
        clock.set(at(4, 17, 59));
        assert_eq!(active_rates(&limits, clock.now()), (50_000, 100_000, true));
        clock.set(at(4, 18, 0));
        assert_eq!(active_rates(&limits, clock.now()), (0, 0, false));
        // Saturday is not listed.
        clock.set(at(5, 12, 0));
        assert_eq!(active_rates(&limits, clock.now()), (0, 0, false));
        let mut off = limits.clone();
        off.alt_schedule.enabled = false;
        assert_eq!(active_rates(&off, at(0, 12, 0)), (0, 0, false));
    }

    #[test]
    fn an_overnight_window_belongs_to_the_day_it_starts() {
        // Friday 22:00 → Saturday 06:00.
        let limits = limits_with_schedule(&["fri"], 22 * 60, 6 * 60);
        assert!(!schedule_active(&limits.alt_schedule, at(4, 21, 59)));
        assert!(schedule_active(&limits.alt_schedule, at(4, 23, 0)));
        assert!(schedule_active(&limits.alt_schedule, at(5, 5, 59)));
        assert!(!schedule_active(&limits.alt_schedule, at(5, 6, 0)));
        // Friday early morning belongs to Thursday's window, which is not listed.
        assert!(!schedule_active(&limits.alt_schedule, at(4, 1, 0)));
        // Sunday night → Monday morning wraps the week.
        let sunday = limits_with_schedule(&["sun"], 23 * 60, 60);
        assert!(schedule_active(&sunday.alt_schedule, at(0, 0, 30)));
    }

    #[test]
    fn battery_and_metered_pause_with_their_reason() {
        let limits = LimitsConfig {
            pause_on_battery_below_percent: 30,
            ..LimitsConfig::default()
        };
        let mains = PowerState {
            on_battery: Some(false),
            battery_percent: Some(20),
            metered: Some(false),
        };
        assert!(pause_reasons(false, &limits, &mains, 0).is_empty());
        let high = PowerState {
            on_battery: Some(true),
            battery_percent: Some(80),
            ..mains
        };
        assert!(
            pause_reasons(false, &limits, &high, 0).is_empty(),
            "above the threshold keeps seeding"
        );
        let low = PowerState {
            battery_percent: Some(30),
            ..high
        };
        assert_eq!(pause_reasons(false, &limits, &low, 0), vec![REASON_BATTERY]);
        let always = LimitsConfig {
            pause_on_battery_below_percent: 100,
            ..limits.clone()
        };
        assert_eq!(
            pause_reasons(false, &always, &high, 0),
            vec![REASON_BATTERY]
        );
        let metered = PowerState {
            metered: Some(true),
            ..mains
        };
        assert_eq!(
            pause_reasons(false, &limits, &metered, 0),
            vec![REASON_METERED]
        );
        let ignore = LimitsConfig {
            pause_on_metered: false,
            pause_on_battery: false,
            ..limits.clone()
        };
        assert!(pause_reasons(
            false,
            &ignore,
            &PowerState {
                metered: Some(true),
                ..low
            },
            0
        )
        .is_empty());
        // Unknown (no UPower / NetworkManager) never pauses.
        assert!(pause_reasons(false, &limits, &PowerState::default(), 0).is_empty());
        assert_eq!(
            pause_reasons(true, &limits, &low, 0),
            vec![REASON_USER, REASON_BATTERY]
        );
    }

    #[test]
    fn the_monthly_cap_pauses_until_the_next_month() {
        let limits = LimitsConfig {
            monthly_upload_bytes: 1000,
            ..LimitsConfig::default()
        };
        let power = PowerState::default();
        let clock = TestClock::new(LocalTime {
            year: 2026,
            month: 12,
            day: 1,
            weekday: 2,
            minute_of_day: 600,
        });
        let mut usage = MonthlyUsage::default();
        usage.add(clock.now(), 999);
        assert!(pause_reasons(false, &limits, &power, usage.uploaded_bytes).is_empty());
        usage.add(clock.now(), 1);
        assert_eq!(
            pause_reasons(false, &limits, &power, usage.uploaded_bytes),
            vec![REASON_MONTHLY_CAP]
        );
        // Persisted and read back (a restart in the same month stays paused).
        let dir = tempfile::tempdir().unwrap();
        usage.save(dir.path()).unwrap();
        let mut again = MonthlyUsage::load(dir.path());
        assert_eq!(again, usage);
        assert!(!again.roll(clock.now()));
        assert_eq!(
            pause_reasons(false, &limits, &power, again.uploaded_bytes),
            vec![REASON_MONTHLY_CAP]
        );
        // January of the next year: a new count, seeding again.
        clock.set(LocalTime {
            year: 2027,
            month: 1,
            day: 1,
            weekday: 4,
            minute_of_day: 0,
        });
        assert!(again.roll(clock.now()));
        assert_eq!(again.month, "2027-01");
        assert!(pause_reasons(false, &limits, &power, again.uploaded_bytes).is_empty());
        // A corrupt file starts from zero instead of failing start-up.
        std::fs::write(MonthlyUsage::path(dir.path()), b"{not json").unwrap();
        assert_eq!(MonthlyUsage::load(dir.path()), MonthlyUsage::default());
    }

    #[test]
    fn eviction_takes_the_least_recently_served_first_and_fits_the_cap() {
        let a = |id, size_bytes, last_served| StoredArtifact {
            id,
            size_bytes,
            last_served,
        };
        let store = vec![a(1, 400, 50), a(2, 300, 10), a(3, 200, 0), a(4, 100, 90)];
        assert!(eviction_order(&store, 0).is_empty(), "no cap");
        assert!(eviction_order(&store, 1000).is_empty(), "already fits");
        // Never served (3) goes first, then the oldest served (2).
        assert_eq!(eviction_order(&store, 600), vec![3, 2]);
        assert_eq!(eviction_order(&store, 599), vec![3, 2]);
        assert_eq!(eviction_order(&store, 499), vec![3, 2, 1]);
        // Filling past the cap one artifact at a time never leaves more than the cap.
        let mut kept: Vec<StoredArtifact> = Vec::new();
        for i in 0..50u64 {
            kept.push(a(i, 10 + (i * 7) % 30, i * 3 % 11));
            let evict = eviction_order(&kept, 200);
            kept.retain(|x| !evict.contains(&x.id));
            assert!(kept.iter().map(|x| x.size_bytes).sum::<u64>() <= 200);
            assert!(kept.iter().any(|x| x.id == i) || evict.contains(&i));
        }
    }
}
