"""Every `syncwatch` sub-command, one module each."""

from syncwatch.commands import bench, db, sim, stats
from syncwatch.commands.pending import PENDING_COMMANDS

COMMANDS = (db.COMMAND, stats.COMMAND, sim.COMMAND, *PENDING_COMMANDS, bench.COMMAND)
