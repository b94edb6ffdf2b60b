"""Actions: retry, reroute, replay and resolve through the partners' APIs, checked and audited."""
