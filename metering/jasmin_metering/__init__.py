"""jasmin_metering."""
