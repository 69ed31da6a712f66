//! The container image, opt-in (`IMAPFLEET_IMAGE_TEST=1`): deploy/test-image.sh builds the image with
//! podman, runs the chart's worker Deployment, ConfigMap and Secret with `podman kube play` against the
//! lab, dispatches a small batch from the host and checks that it completes, that host2 is identical,
//! that the container's /metrics answers, and that SIGTERM stops the worker cleanly. The script exits 77
//! when podman is not available and cannot be installed: the test then says so and passes.

use std::process::Command;

#[test]
fn image_runs_the_chart_against_the_lab() {
    if std::env::var("IMAPFLEET_IMAGE_TEST").as_deref() != Ok("1") {
        eprintln!(
            "SKIP image test: set IMAPFLEET_IMAGE_TEST=1 to build the image and run it with podman"
        );
        return;
    }
    let script = deploy_tests::workspace_root().join("deploy/test-image.sh");
    let started = std::time::Instant::now();
    let state = std::env::temp_dir().join(format!("imapfleet-image-test-{}", std::process::id()));
    let status = Command::new("bash")
        .arg(&script)
        // This test's own build of the renderer (no cargo run inside a cargo test), and a state
        // directory to read the live /metrics from afterwards.
        .env("IMAPFLEET_RENDER_CHART", env!("CARGO_BIN_EXE_render-chart"))
        .env("IMAPFLEET_IMAGE_STATE", &state)
        .status()
        .expect("run deploy/test-image.sh");
    eprintln!(
        "deploy/test-image.sh: {status} after {:?}",
        started.elapsed()
    );
    match status.code() {
        Some(0) => {
            // The dashboard and alert rules against the container's live /metrics.
            let text = std::fs::read_to_string(state.join("metrics.txt")).expect("metrics.txt");
            eprintln!("{}", deploy_tests::dashboard::check_live_sample(&text));
            let _ = std::fs::remove_dir_all(&state);
        }
        Some(77) => {
            eprintln!("SKIP image test: podman is not available here (see the script's output)")
        }
        _ => panic!("deploy/test-image.sh failed ({status})"),
    }
}
