"""Every `syncwatch` sub-command, one module each."""

from syncwatch.commands import actions, bench, bulk, correlate, dashboard, db, demo, export, ingest, serve, sim, stats

COMMANDS = (
    db.COMMAND,
    stats.COMMAND,
    sim.COMMAND,
    serve.COMMAND,
    ingest.COMMAND,
    correlate.COMMAND,
    export.COMMAND,
    dashboard.COMMAND,
    demo.COMMAND,
    *actions.COMMANDS,
    bulk.COMMAND,
    bench.COMMAND,
)
