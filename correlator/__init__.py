"""Correlator: links observations into transactions, evaluates SLAs, derives exceptions and KPIs."""
