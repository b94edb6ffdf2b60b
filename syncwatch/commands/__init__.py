"""Every `syncwatch` sub-command, one module each."""

from syncwatch.commands import bench, db, stats
from syncwatch.commands.pending import PENDING_COMMANDS

COMMANDS = (db.COMMAND, stats.COMMAND, *PENDING_COMMANDS, bench.COMMAND)
