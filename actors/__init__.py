"""Ray actors that execute the plan: partition workers that hold a RayDP Spark session."""
