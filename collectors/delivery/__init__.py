"""Getting captures to Kafka: the bounded queue, the Kafka sender and the collector's metrics."""
