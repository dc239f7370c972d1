//! `pkgseed`: the headless daemon and the commands that talk to it over the local control socket.

mod bench;
mod bench_daemon;
mod bench_desktop;
mod bench_net;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pkgseed_engine::control::{self, ControlRequest};
use pkgseed_engine::{ArtifactView, Engine, EngineDirs, EngineOptions, OriginMark, Status};

/// Like `println!`, but a closed stdout (`pkgseed ls | head`) ends quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "pkgseed",
    version,
    about = "Seed the public packages in your package caches over IPFS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine in the foreground (headless).
    Daemon {
        /// `public` joins the public IPFS network; `local` stays on loopback with no bootstrap (tests, benchmarks).
        #[arg(long, value_parser = ["public", "local"])]
        network: Option<String>,
        /// A multiaddr to listen on (repeatable); default: the network profile's.
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// The local trustless gateway's loopback `IP:PORT` (port 0: any free port; "": off); default: the config's
        /// `gateway_listen_addr`.
        #[arg(long = "gateway-listen", value_name = "IP:PORT")]
        gateway_listen: Option<String>,
    },
    /// Show the running daemon's status.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List the origins found, with the rule that decided each one; or mark one (`pkgseed origins mark`).
    Origins {
        #[command(subcommand)]
        action: Option<OriginsAction>,
        #[arg(long)]
        json: bool,
    },
    /// List the seeded artifacts.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Print the root CID of files (no daemon needed).
    Cid {
        #[arg(long, default_value = "unixfs-v1-2025", value_parser = ["unixfs-v1-2025", "unixfs-v0-2015"])]
        profile: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Stop serving and announcing (survives a restart).
    Pause,
    /// Serve and announce again.
    Resume,
    /// Rescan every cache now.
    Scan,
    /// Show the limits, or change them live (bytes and bytes per second; 0 = unlimited). Saved to the config file.
    Limits {
        /// Upload cap, bytes per second.
        #[arg(long, value_name = "BYTES_PER_SEC")]
        upload: Option<u64>,
        /// Download cap, bytes per second.
        #[arg(long, value_name = "BYTES_PER_SEC")]
        download: Option<u64>,
        /// Upload cap while the alternative schedule is in force.
        #[arg(long, value_name = "BYTES_PER_SEC")]
        alt_upload: Option<u64>,
        /// Download cap while the alternative schedule is in force.
        #[arg(long, value_name = "BYTES_PER_SEC")]
        alt_download: Option<u64>,
        /// Upload allowed per calendar month.
        #[arg(long, value_name = "BYTES")]
        monthly_upload_cap: Option<u64>,
        /// The most disk pkgseed's own index and store may use.
        #[arg(long, value_name = "BYTES")]
        disk_cap: Option<u64>,
        /// Pause on battery (at or below --pause-on-battery-below-percent).
        #[arg(long, value_name = "BOOL")]
        pause_on_battery: Option<bool>,
        #[arg(long, value_name = "PERCENT")]
        pause_on_battery_below_percent: Option<u8>,
        /// Pause on a network the OS marks metered.
        #[arg(long, value_name = "BOOL")]
        pause_on_metered: Option<bool>,
        /// Keep serving artifacts their package manager deleted, from hard links in pkgseed's store.
        #[arg(long, value_name = "BOOL")]
        keep_evicted_artifacts: Option<bool>,
        #[arg(long)]
        json: bool,
    },
    /// Measure indexing on a generated cache and print a table with same-run baselines.
    Bench {
        /// Synthetic artifacts to generate.
        #[arg(long, default_value_t = 1000)]
        artifacts: usize,
        /// RNG seed for the synthetic cache.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Where to put the synthetic cache and index (default: a temp dir, removed afterwards).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Artifacts in the in-process rows' full-size cache (hashing, index); default: --artifacts. At 100k the
        /// full-size cache would need ~49 GB: the daemon rows scale their cache down, these rows do not.
        #[arg(long)]
        in_process_artifacts: Option<usize>,
        /// Only the in-process rows (hashing, index), not the daemon rows.
        #[arg(long)]
        no_daemon: bool,
        /// Total size of the daemon's synthetic cache; artifact sizes are scaled down to fit.
        #[arg(long, default_value_t = 2_000_000_000)]
        daemon_total_bytes: u64,
        /// The daemon rows' synthetic cache: `cargo` (`.crate` files and cargo's index cache) or `npm` (npm's
        /// `_cacache`: content blobs named by their sha512 and the `index-v5` entries naming their tarball URLs).
        #[arg(long, default_value = "cargo")]
        daemon_ecosystem: bench_daemon::SyntheticEcosystem,
        /// How long the idle measurement lasts.
        #[arg(long, default_value_t = 60)]
        idle_seconds: u64,
        /// Leave out the network rows (serving, caps, pause, announcing; they need node and tests/js).
        #[arg(long)]
        no_net: bool,
        /// The Helia tools (tests/js with its node_modules); default: $PKGSEED_BENCH_JS_DIR, ./tests/js, or
        /// tests/js of the checkout the binary was built in. Node is $NODE or `node`.
        #[arg(long)]
        js_dir: Option<PathBuf>,
        /// Size of the artifact served to Helia (the serving row).
        #[arg(long, default_value_t = 100_000_000)]
        serve_bytes: u64,
        /// Upload caps to measure, bytes per second, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [262_144u64, 1_048_576, 10_485_760])]
        cap_rates: Vec<u64>,
        /// The window each cap is measured over.
        #[arg(long, default_value_t = 10.0)]
        cap_window_seconds: f64,
        /// Small artifacts whose keys the announcing row counts.
        #[arg(long, default_value_t = 2000)]
        announce_artifacts: usize,
        /// js-libp2p Kademlia nodes in the announcing row's local DHT.
        #[arg(long, default_value_t = 4)]
        dht_nodes: usize,
        /// Leave out the desktop row.
        #[arg(long)]
        no_desktop: bool,
        /// The tray app; default: $PKGSEED_DESKTOP_BIN, else pkgseed-desktop next to this binary.
        #[arg(long)]
        desktop_bin: Option<PathBuf>,
        /// How long the tray app runs after its first scan before its RSS is read.
        #[arg(long, default_value_t = 20)]
        desktop_settle_seconds: u64,
    },
}

#[derive(Subcommand)]
enum OriginsAction {
    /// Mark an origin public or private, or remove its mark (`auto`); saved to the config, applied at once.
    Mark {
        /// An origin id as `pkgseed origins` lists it; with --all-scopes, an npm registry URL or one of its scope
        /// origins (`<registry>@scope/`).
        origin: String,
        #[arg(value_parser = ["public", "private", "auto"])]
        mark: String,
        /// Mark every scope of the npm registry at once (the config entry `<registry>@*`). A scope marked private,
        /// and the scopes of a registry your npm config holds credentials for, are never covered.
        #[arg(long)]
        all_scopes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pkgseed: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pkgseed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Daemon {
            network,
            listen,
            gateway_listen,
        } => daemon(network, listen, gateway_listen).await,
        Command::Status { json } => {
            let value = ask(ControlRequest::Status).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print_status(&serde_json::from_value(value)?);
            }
            Ok(())
        }
        Command::Origins { action: None, json } => {
            let value = ask(ControlRequest::Status).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&value["origins"])?);
            } else {
                let status: Status = serde_json::from_value(value)?;
                for origin in &status.origins {
                    out!(
                        "{} {} [{}] {} files: {}",
                        origin.ecosystem,
                        origin.origin,
                        origin.provenance,
                        origin.artifacts,
                        origin.evidence
                    );
                }
            }
            Ok(())
        }
        Command::Origins {
            action:
                Some(OriginsAction::Mark {
                    origin,
                    mark,
                    all_scopes,
                }),
            json,
        } => {
            let origin = if all_scopes {
                pkgseed_sources::npm::scope_wildcard_for(&origin).with_context(|| {
                    format!("--all-scopes needs an npm registry's http(s) URL, not {origin:?}")
                })?
            } else {
                origin
            };
            let mark = match mark.as_str() {
                "public" => OriginMark::Public,
                "private" => OriginMark::Private,
                _ => OriginMark::Auto,
            };
            let value = ask(ControlRequest::MarkOrigin {
                origin: origin.clone(),
                mark,
            })
            .await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                out!("{origin}: {mark:?}");
            }
            Ok(())
        }
        Command::Ls { json } => {
            let value = ask(ControlRequest::Ls).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let artifacts: Vec<ArtifactView> = serde_json::from_value(value)?;
                for a in artifacts {
                    out!("{}  {} {} {}", a.cid, a.ecosystem, a.name, a.version);
                }
            }
            Ok(())
        }
        Command::Cid { profile, files } => {
            let profile = pkgseed_unixfs::Profile::parse(&profile).context("unknown profile")?;
            for file in files {
                let dag = pkgseed_unixfs::dag_of_file(&file, profile, false)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                out!("{}  {}", dag.root, file.display());
            }
            Ok(())
        }
        Command::Pause => ask(ControlRequest::Pause).await.map(|_| out!("paused")),
        Command::Resume => ask(ControlRequest::Resume).await.map(|_| out!("seeding")),
        Command::Scan => ask(ControlRequest::Scan).await.map(|_| out!("scan queued")),
        Command::Limits {
            upload,
            download,
            alt_upload,
            alt_download,
            monthly_upload_cap,
            disk_cap,
            pause_on_battery,
            pause_on_battery_below_percent,
            pause_on_metered,
            keep_evicted_artifacts,
            json,
        } => {
            let update = control::LimitsUpdate {
                upload_bytes_per_sec: upload,
                download_bytes_per_sec: download,
                alt_upload_bytes_per_sec: alt_upload,
                alt_download_bytes_per_sec: alt_download,
                monthly_upload_bytes: monthly_upload_cap,
                disk_bytes: disk_cap,
                pause_on_battery,
                pause_on_battery_below_percent,
                pause_on_metered,
                keep_evicted_artifacts,
                alt_schedule: None,
            };
            let value = ask(ControlRequest::Limits(update)).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let limits: pkgseed_engine::LimitsConfig = serde_json::from_value(value)?;
                let rate = |v: u64| {
                    if v == 0 {
                        "unlimited".to_string()
                    } else {
                        format!("{v} B/s")
                    }
                };
                let bytes = |v: u64| {
                    if v == 0 {
                        "unlimited".to_string()
                    } else {
                        format!("{v} bytes")
                    }
                };
                out!("upload:        {}", rate(limits.upload_bytes_per_sec));
                out!("download:      {}", rate(limits.download_bytes_per_sec));
                out!("alt upload:    {}", rate(limits.alt_upload_bytes_per_sec));
                out!("alt download:  {}", rate(limits.alt_download_bytes_per_sec));
                out!(
                    "alt schedule:  {}",
                    if limits.alt_schedule.enabled {
                        "on"
                    } else {
                        "off"
                    }
                );
                out!("monthly cap:   {}", bytes(limits.monthly_upload_bytes));
                out!("disk cap:      {}", bytes(limits.disk_bytes));
                out!(
                    "deleted by their package manager: {}",
                    if limits.keep_evicted_artifacts {
                        "keep serving (pkgseed's store)"
                    } else {
                        "withdraw"
                    }
                );
                out!(
                    "on battery:    {}",
                    if limits.pause_on_battery {
                        format!(
                            "pause at or below {}%",
                            limits.pause_on_battery_below_percent
                        )
                    } else {
                        "keep seeding".into()
                    }
                );
                out!(
                    "metered:       {}",
                    if limits.pause_on_metered {
                        "pause"
                    } else {
                        "keep seeding"
                    }
                );
            }
            Ok(())
        }
        Command::Bench {
            artifacts,
            seed,
            work_dir,
            in_process_artifacts,
            no_daemon,
            daemon_total_bytes,
            daemon_ecosystem,
            idle_seconds,
            no_net,
            js_dir,
            serve_bytes,
            cap_rates,
            cap_window_seconds,
            announce_artifacts,
            dht_nodes,
            no_desktop,
            desktop_bin,
            desktop_settle_seconds,
        } => {
            let options = bench::BenchOptions {
                artifacts,
                in_process_artifacts: in_process_artifacts.unwrap_or(artifacts),
                seed,
                work_dir,
                daemon: !no_daemon,
                daemon_total_bytes,
                daemon_ecosystem,
                idle_seconds,
                net: (!no_net).then_some(bench_net::NetBenchOptions {
                    js_dir,
                    seed,
                    serve_bytes,
                    cap_rates,
                    cap_window_secs: cap_window_seconds,
                    announce_artifacts,
                    dht_nodes,
                }),
                desktop: (!no_desktop).then_some(bench_desktop::DesktopBenchOptions {
                    bin: desktop_bin,
                    settle_seconds: desktop_settle_seconds,
                }),
            };
            tokio::task::spawn_blocking(move || bench::run(options)).await?
        }
    }
}

async fn ask(request: ControlRequest) -> Result<serde_json::Value> {
    let dirs = EngineDirs::from_env()?;
    Ok(control::request(&dirs.control_socket_path(), &request).await?)
}

async fn daemon(
    network: Option<String>,
    listen: Vec<String>,
    gateway_listen: Option<String>,
) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PKGSEED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut options = EngineOptions::from_env()?;
    options.network_override = network;
    options.listen_override = listen;
    options.gateway_listen_override = gateway_listen;
    let socket_path = options.dirs.control_socket_path();
    let engine = Engine::start(options).await?;
    let control_task = control::serve(engine.clone(), &socket_path).await?;
    let status = engine.status().await;
    tracing::info!(peer_id = %status.peer_id, listen = ?status.listen_addrs, network = %status.network, "pkgseed is running");
    wait_for_stop_signal().await;
    tracing::info!("stopping");
    control_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    engine.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn print_status(status: &Status) {
    out!("peer id:   {}", status.peer_id);
    out!("network:   {}", status.network);
    for addr in &status.listen_addrs {
        out!("listening: {addr}");
    }
    match (&status.gateway.listen_addr, &status.gateway.error) {
        (Some(addr), _) => out!("gateway:   http://{addr}/ipfs/{{cid}}?format=raw|car"),
        (None, Some(err)) => out!("gateway:   off ({err})"),
        (None, None) => out!("gateway:   off"),
    }
    match (&status.pause_reason, status.paused) {
        (Some(reason), true) => out!("state:     paused ({reason})"),
        (_, true) => out!("state:     paused"),
        _ => out!("state:     seeding"),
    }
    for (ecosystem, counts) in &status.ecosystems {
        out!(
            "{ecosystem:>10}: {} artifacts, {} bytes",
            counts.artifacts,
            counts.bytes
        );
    }
    out!(
        "served:    {} blocks, {} bytes",
        status.blocks_served,
        status.bytes_served
    );
    out!(
        "announced: {} keys ({} queued)",
        status.announced_keys,
        status.announce_queue_len
    );
    if !status.first_scan_done {
        out!(
            "indexing:  {}/{} files",
            status.scan.files_done,
            status.scan.files_total
        );
    }
    for origin in &status.origins {
        out!(
            "origin:    {} {} [{}] {} files",
            origin.ecosystem,
            origin.origin,
            origin.provenance,
            origin.artifacts
        );
    }
    if let Some(warning) = &status.identity_warning {
        out!("warning:   {warning}");
    }
}
