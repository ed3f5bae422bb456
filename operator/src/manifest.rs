//! Reading McpServer and McpRoute manifests from files and stdin.
