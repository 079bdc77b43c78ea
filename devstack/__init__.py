"""The local dev stack: the harness that starts a real broker, the daemon, Prometheus and Alertmanager
on loopback ports, for `make demo`, the integration tests and `make bench` alike.

It lives outside the installed packages (not in the wheel, not in the image): it needs the checkout's
deploy/ files, the Tansu binary of the dev extras and the Debian Prometheus packages.

    procs       Stack (processes started, stopped in reverse order), wait_until, free_port, http_get
    broker      the Tansu binary, Broker / start_tansu, read_topic
    finsent     the finsent command line and its environment; start the daemon, replay, slice a feed
    prometheus  Alertmanager, Prometheus and the webhook receiver started on the project's configs
    monitoring  the deploy/ configs as data: local and time-scaled copies, PromQL of rules and dashboard
    demo        `make demo`: the story and the live table
"""
