"""agentcast producer role."""
