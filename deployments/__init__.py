"""Every way opsflow is started: the `pipeline` CLI, `pipeline serve`, and the alert receiver."""
