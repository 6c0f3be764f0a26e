"""agentcast gateway role."""
