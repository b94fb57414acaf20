"""Kafka client settings shared by ingest, the producer library and the sealer."""
