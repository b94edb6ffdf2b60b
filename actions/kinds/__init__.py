"""What each kind of partner offers beyond re-sending a request: one module per kind."""
