// Package auth guards the agent's HTTP API with bearer tokens of two
// roles: read (inspect backups, operations, the cluster) and admin
// (everything that changes state). Tokens live in files, like the
// repository password, so they stay out of the process list, the YAML
// config and the environment. It knows nothing about the API's routes
// beyond the HTTP method and a caller-supplied list of public paths.
package auth
