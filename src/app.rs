//! App wiring: the one place the engine, the HTTP server and the local agents are built.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use flotilla_actors::engine::{Engine, EngineConfig};
use flotilla_actors::files::write_atomic;
use flotilla_actors::supervisor::{local_ids, server_file, LocalAgents, LocalSupervisor};

use crate::config::ServeConfig;
use crate::http::{self, Limits};

/// Runs `flotilla serve` until SIGINT/SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    if config.local_instances > 0 {
        // Refused here, before anything starts, rather than by each agent in a restart loop.
        crate::agent::user::for_agent(config.local_run_as.as_deref())
            .context("local agents (--local-run-as)")?;
    }
    let (engine, report, mut watchdog) = Engine::start(EngineConfig {
        state_dir: config.state_dir.clone(),
        artifacts_dir: config.artifacts_dir.clone(),
        admin_token: config.admin_token.clone(),
        scope: config.scope.clone(),
        guard: config.guard.clone(),
        control_plane: config.control_plane.clone(),
        fleet: config.fleet,
        scheduler: config.scheduler.clone(),
        streaming: config.streaming,
        tokens: config.tokens,
        retention: config.retention,
        alerts: config.alerts.clone(),
        rollout: config.rollout.clone(),
    })
    .await
    .context("starting the engine")?;
    if config.admin_token.is_none() {
        let path = config.state_dir.join("admin.token");
        let verb = if report.admin_token_created {
            "created"
        } else {
            "kept"
        };
        eprintln!(
            "admin token {verb} in {} (mode 0600); clients use it as\n  export FLOTILLA_TOKEN=$(cat {})",
            path.display(),
            path.display()
        );
    }
    if report.recovered > 0 {
        tracing::info!(
            tasks = report.recovered,
            "recovered live tasks from the store"
        );
    }
    let data = web::Data::new((
        engine.clone(),
        Limits {
            max_body_bytes: config.max_body_bytes,
            max_batch_bytes: config.max_batch_bytes,
            max_batch_items: config.max_batch_items,
        },
    ));
    // Observer frames encoded once and shared by every observer of a handle.
    let wire = web::Data::new(http::wire::WireCache::new(http::wire::WIRE_CACHE_BYTES));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(wire.clone())
            .configure(http::routes)
            .wrap_fn(|req, srv| {
                let call = actix_web::dev::Service::call(srv, req);
                async move { http::respcheck::check(call.await?).await }
            })
    })
    .workers(2)
    // Each connection keeps a duplicate of its socket, so that a stalled observer can be
    // cut off (see `http::stream`); it is closed with the connection.
    .on_connect(|conn, data| {
        use std::os::fd::AsFd;
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
                data.insert(http::stream::ConnSocket(std::sync::Arc::new(fd)));
            }
        }
    })
    // Control messages are small and latency-bound; never wait for Nagle.
    .tcp_nodelay(true)
    // Agent and observer sockets never finish on their own; both reconnect, so a
    // stopping server waits only briefly for in-flight requests.
    .shutdown_timeout(2)
    .bind(config.bind)
    .with_context(|| format!("binding {}", config.bind))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .context("the server bound no address")?;
    // Local agents, including those still running from before a crash, read where the
    // server is from here before each connection.
    let url_file = server_file(&config.state_dir);
    write_atomic(
        &url_file,
        format!("http://{}\n", reachable(addr)).as_bytes(),
    )
    .with_context(|| format!("writing {}", url_file.display()))?;
    println!("flotilla listening on http://{addr}");
    let _ = std::io::stdout().flush();
    engine.set_local(local_ids(config.local_instances));
    let supervisor = (config.local_instances > 0)
        .then(|| -> anyhow::Result<LocalSupervisor> {
            Ok(LocalSupervisor::start(
                LocalAgents {
                    exe: std::env::current_exe().context("locating the flotilla executable")?,
                    count: config.local_instances,
                    state_dir: config.state_dir.clone(),
                    tokens: engine.tokens.clone(),
                    run_as: config.local_run_as.clone(),
                    capabilities: config.local_capabilities.clone(),
                    slots: config.local_slots,
                    fleet: config.fleet,
                },
                engine.suspects.clone(),
                {
                    let engine = engine.clone();
                    std::sync::Arc::new(move |id, why| engine.instance_failed(id, why))
                },
            ))
        })
        .transpose()?;
    tokio::spawn(trim_after_observers(engine.observers.clone()));
    // They hold nothing of their own (the alerts' and rollouts' state is the engine's):
    // one that panics is started again rather than left dead.
    tokio::spawn(restarting("alerts", {
        let engine = engine.clone();
        move || crate::alerts::run(engine.clone())
    }));
    tokio::spawn(restarting("rollout check", {
        let (engine, every) = (engine.clone(), config.rollout.check_every_ms);
        move || check_rollouts(engine.clone(), every)
    }));
    tokio::select! {
        run = server.run() => run.context("running the HTTP server")?,
        death = watchdog.death() => {
            // Nothing the dead actor held can be rebuilt in place. Exit at once, as a
            // crash would: local agents keep running and re-attach to the next server,
            // whose start runs the ordinary recovery path.
            tracing::error!(actor = death.actor, panicked = death.panicked, "{death}; exiting so that a restart recovers");
            std::process::exit(70);
        }
    }
    if let Some(s) = supervisor {
        s.stop().await;
    }
    // The next start then loads the index instead of rescanning the log.
    if let Err(e) = engine.log.checkpoint().await {
        tracing::warn!(error = %e, "frame log index not checkpointed at stop");
    }
    Ok(())
}

/// The address local agents dial: the bound one, or loopback when bound to all interfaces.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// Gives the memory a burst of observers held back to the system once they left: the
/// allocator keeps freed memory for reuse otherwise, and the server's resident size would
/// stay at its peak.
async fn trim_after_observers(observers: flotilla_actors::subscriber::registry::ObserverRegistry) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut before = 0;
    loop {
        every.tick().await;
        let now = observers.count();
        if now < before {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only returns free memory of the allocator's arenas.
            unsafe {
                libc::malloc_trim(0);
            }
        }
        before = now;
    }
}

/// Checks again, on an interval, the gates of every component a rollout advanced; one
/// that fails rolls its component back a phase.
async fn check_rollouts(engine: Engine, every_ms: u64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(every_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = engine.rollout_check().await {
            tracing::warn!(error = %e, "rollout gates not checked");
        }
    }
}

/// Runs the task `make` builds until it ends by itself; one that panics is logged and
/// started again a second later.
async fn restarting<F>(name: &'static str, make: impl Fn() -> F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(task = name, error = %e, "background task panicked; starting it again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
