"""Room server and clients: signaling only, never MPC data."""
