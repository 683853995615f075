"""The local stack: every service and Envoy as processes (`make run`)."""
