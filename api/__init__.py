"""FastAPI application: REST over the projection, chunk bytes straight into pools."""
