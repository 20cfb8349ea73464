"""The line's standard outputs beside its PUB socket (MQTT, OPC UA for the PLC): subscribers of its decisions,
each with a bounded queue and a thread of its own, so that a broker or PLC that is slow or away never holds up
scoring."""
