"""jasmin_signaling."""
