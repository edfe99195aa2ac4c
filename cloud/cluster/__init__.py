"""Growing past one machine: the NATS cluster's partitions, partition leases and replica ownership."""
