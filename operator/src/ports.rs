//! Sidecar listener ports for McpRoutes: assigned once, kept stable.
