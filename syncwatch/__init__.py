"""syncwatch: observability and exception management for the syncs of a distribution business."""

__version__ = "0.1.0"
