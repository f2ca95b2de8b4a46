"""Cluster plumbing: the embedded catalog service, catalog resolution, jars and RayDP fixes."""
