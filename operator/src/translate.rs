//! McpServer + McpRoutes → the sidecar configuration (sluice-proxy-config).
