"""Device evaluation: framing, transports, the request/response session and the UART evaluation (imports earlier stages)."""
