"""Dashboard: the Streamlit app, one module per page, reading through the store's named queries."""
