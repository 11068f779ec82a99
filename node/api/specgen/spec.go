package specgen

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
)

// param is a query or path parameter.
type param struct {
	name, in, typ, desc string
}

// route is one operation of the API.
type route struct {
	method, path, summary string
	params                []param
	// body is the request body's type (nil: none); required lists the
	// body fields the server insists on.
	body     reflect.Type
	required []string
	// answers maps each success status to the body's type (nil: no
	// JSON body).
	answers map[int]reflect.Type
	// errors are the error statuses the route may answer.
	errors []int
	// leader marks writes a follower forwards to the leader.
	leader bool
}

var (
	opType      = reflect.TypeFor[fsm.Operation]()
	startedType = reflect.TypeFor[api.StartedOperation]()
	scheduleT   = reflect.TypeFor[api.Schedule]()
	removedT    = reflect.TypeFor[map[string]string]()
)

// start is a route that starts an operation of kind.
func start(path, summary string, body reflect.Type, required ...string) route {
	return route{method: http.MethodPost, path: path, summary: summary, body: body, required: required, leader: true,
		answers: map[int]reflect.Type{http.StatusAccepted: opType, http.StatusOK: startedType},
		errors:  []int{400, 404, 409, 413, 503}}
}

var nameParam = param{"name", "path", "string", "the schedule's name"}

// Routes is the table of public routes; Generate makes the spec of it.
var routes = []route{
	start("/v1/backups", "Start a backup of every node", reflect.TypeFor[api.StartBackupRequest]()),
	start("/v1/restores", "Start a restore (default: the latest backup)", reflect.TypeFor[api.StartRestoreRequest]()),
	{method: http.MethodPost, path: "/v1/restores/preview", summary: "What a restore would create, overwrite and delete on each node; changes nothing",
		body: reflect.TypeFor[api.StartRestoreRequest](), answers: map[int]reflect.Type{200: reflect.TypeFor[api.RestorePreview]()}, errors: []int{400, 404, 413, 503}},
	start("/v1/deletions", "Start deleting backups", reflect.TypeFor[api.StartDeleteRequest](), "backup_ids"),
	start("/v1/gc", "Start a garbage collection", reflect.TypeFor[api.StartGCRequest]()),
	start("/v1/cleanups", "Start a cleanup: the retention policy, then garbage collection", reflect.TypeFor[api.StartCleanupRequest]()),
	{method: http.MethodGet, path: "/v1/cleanups/preview", summary: "What a cleanup would keep and delete; changes nothing",
		params: []param{{"keep_last", "query", "integer", "keep the newest N backups"}, {"keep_within", "query", "string", "keep backups younger than this duration (720h)"},
			{"min_keep", "query", "integer", "never keep fewer"}},
		answers: map[int]reflect.Type{200: reflect.TypeFor[api.CleanupPreview]()}, errors: []int{400}},
	start("/v1/verifications", "Start a repository check", reflect.TypeFor[api.StartVerifyRequest]()),
	start("/v1/repairs", "Start a repair of the index, the packs or the snapshots", reflect.TypeFor[api.StartRepairRequest](), "kind"),
	start("/v1/drills", "Start a restore drill: restore into scratch space, check every byte, remove it", reflect.TypeFor[api.StartDrillRequest]()),
	{method: http.MethodGet, path: "/v1/operations", summary: "The latest operations, newest first",
		params:  []param{{"limit", "query", "integer", "at most this many (default 20)"}, {"consistent", "query", "boolean", "read through the leader"}},
		answers: map[int]reflect.Type{200: reflect.TypeFor[api.OperationList]()}, errors: []int{400, 503}},
	{method: http.MethodGet, path: "/v1/operations/{id}", summary: "One operation; long-polls with wait and revision",
		params: []param{{"id", "path", "string", "the operation id"}, {"wait", "query", "string", "long-poll up to this duration (30s)"},
			{"revision", "query", "integer", "answer once the operation's revision passes this"}, {"consistent", "query", "boolean", "read through the leader"}},
		answers: map[int]reflect.Type{200: opType}, errors: []int{400, 404, 503}},
	{method: http.MethodGet, path: "/v1/operations/{id}/steps/{step}/result", summary: "One page of a step's result (an operation serves a large one cut, marked result_paged)",
		params: []param{{"id", "path", "string", "the operation id"}, {"step", "path", "integer", "the step's index in the plan"},
			{"cursor", "query", "string", "the next_cursor of the page before (none: the first page)"},
			{"limit", "query", "integer", "at most this many list items (default 100, at most 1000)"}, {"consistent", "query", "boolean", "read through the leader"}},
		answers: map[int]reflect.Type{200: reflect.TypeFor[api.StepResultPage]()}, errors: []int{400, 404, 503}},
	{method: http.MethodGet, path: "/v1/backups", summary: "Backups, newest first, paged",
		params:  []param{{"limit", "query", "integer", "at most this many (default 100)"}, {"cursor", "query", "string", "the next_cursor of the page before"}},
		answers: map[int]reflect.Type{200: reflect.TypeFor[api.BackupList]()}, errors: []int{400}},
	{method: http.MethodGet, path: "/v1/backups/{id}", summary: "One backup; files=true adds every file entry",
		params:  []param{{"id", "path", "string", "the backup id"}, {"files", "query", "boolean", "include the file lists"}},
		answers: map[int]reflect.Type{200: reflect.TypeFor[api.BackupDetail]()}, errors: []int{400, 404}},
	{method: http.MethodGet, path: "/v1/cluster", summary: "Members (gossip and Raft) as the answering agent sees them",
		answers: map[int]reflect.Type{200: reflect.TypeFor[api.ClusterStatus]()}},
	{method: http.MethodPost, path: "/v1/cluster/remove", summary: "Remove a member that is not alive", leader: true,
		body: reflect.TypeFor[api.RemoveNodeRequest](), required: []string{"node"}, answers: map[int]reflect.Type{200: removedT}, errors: []int{400, 404, 413, 503}},
	{method: http.MethodPost, path: "/v1/cluster/leave", summary: "Make the answering agent leave the cluster for good",
		answers: map[int]reflect.Type{200: removedT}, errors: []int{400}},
	{method: http.MethodGet, path: "/v1/version", summary: "The agent's version", answers: map[int]reflect.Type{200: reflect.TypeFor[api.Version]()}},
	{method: http.MethodGet, path: "/v1/openapi.json", summary: "This spec", answers: map[int]reflect.Type{200: reflect.TypeFor[map[string]any]()}},
	{method: http.MethodGet, path: "/v1/schedules", summary: "The schedules with their next and last runs",
		answers: map[int]reflect.Type{200: reflect.TypeFor[api.ScheduleList]()}},
	{method: http.MethodPost, path: "/v1/schedules", summary: "Create a schedule (200 when the same definition exists, 409 when another does)", leader: true,
		body: reflect.TypeFor[api.ScheduleRequest](), required: []string{"cron"},
		answers: map[int]reflect.Type{201: scheduleT, 200: scheduleT}, errors: []int{400, 409, 413, 503}},
	{method: http.MethodGet, path: "/v1/schedules/{name}", summary: "One schedule", params: []param{nameParam},
		answers: map[int]reflect.Type{200: scheduleT}, errors: []int{404}},
	{method: http.MethodPut, path: "/v1/schedules/{name}", summary: "Define or redefine a schedule (its last run is kept)", leader: true,
		params: []param{nameParam}, body: reflect.TypeFor[api.ScheduleRequest](), required: []string{"cron"},
		answers: map[int]reflect.Type{200: scheduleT}, errors: []int{400, 413, 503}},
	{method: http.MethodDelete, path: "/v1/schedules/{name}", summary: "Remove a schedule (its operations stay)", leader: true,
		params: []param{nameParam}, answers: map[int]reflect.Type{200: reflect.TypeFor[fsm.Schedule]()}, errors: []int{404, 503}},
	{method: http.MethodPost, path: "/v1/schedules/{name}/pause", summary: "Pause a schedule", leader: true,
		params: []param{nameParam}, answers: map[int]reflect.Type{200: scheduleT}, errors: []int{404, 503}},
	{method: http.MethodPost, path: "/v1/schedules/{name}/resume", summary: "Resume a schedule", leader: true,
		params: []param{nameParam}, answers: map[int]reflect.Type{200: scheduleT}, errors: []int{404, 503}},
}

var errorText = map[int]string{
	400: "malformed or refused request (bad_request); nothing was changed",
	404: "unknown operation, backup, schedule or node (not_found)",
	409: "busy, conflict, stale_epoch or other_repository",
	413: "request body over the endpoint's limit (too_large)",
	503: "no leader, or the outcome is unknown (no_leader): retry with the same id",
}

// Generate returns the spec, indented, with a final newline.
func Generate() ([]byte, error) {
	s := &schemas{defs: map[string]any{}, types: map[string]reflect.Type{}}
	paths := map[string]map[string]any{}
	for _, r := range routes {
		op := map[string]any{"summary": r.summary, "operationId": operationID(r)}
		if r.leader {
			op["description"] = "A write: a follower forwards it to the leader."
		}
		var params []any
		for _, p := range r.params {
			params = append(params, map[string]any{"name": p.name, "in": p.in, "required": p.in == "path",
				"description": p.desc, "schema": map[string]any{"type": p.typ}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if r.body != nil {
			name := strings.TrimPrefix(s.ref(r.body)["$ref"].(string), "#/components/schemas/")
			req := s.defs[name].(map[string]any)
			// The server decodes strictly: unknown fields are a 400.
			req["additionalProperties"] = false
			delete(req, "required")
			if r.required != nil {
				req["required"] = r.required
			}
			op["requestBody"] = map[string]any{"required": false, "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/" + name}}}}
		}
		responses := map[string]any{}
		for status, t := range r.answers {
			responses[strconv.Itoa(status)] = map[string]any{"description": http.StatusText(status),
				"content": map[string]any{"application/json": map[string]any{"schema": s.ref(t)}}}
		}
		for _, status := range r.errors {
			responses[strconv.Itoa(status)] = map[string]any{"$ref": "#/components/responses/E" + strconv.Itoa(status)}
		}
		responses["default"] = map[string]any{"$ref": "#/components/responses/Error"}
		op["responses"] = responses
		if paths[r.path] == nil {
			paths[r.path] = map[string]any{}
		}
		paths[r.path][strings.ToLower(r.method)] = op
	}
	errRef := map[string]any{"application/json": map[string]any{"schema": s.ref(reflect.TypeFor[api.ErrorResponse]())}}
	responses := map[string]any{"Error": map[string]any{"description": "an error (internal: 500)", "content": errRef}}
	for status, text := range errorText {
		responses["E"+strconv.Itoa(status)] = map[string]any{"description": text, "content": errRef}
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "crayfish", "version": "1",
			"description": "The HTTP API of a crayfish agent (docs/api.md). Any agent answers; writes go to the Raft leader. Generated by node/api/specgen."},
		"paths": paths,
		"components": map[string]any{
			"schemas":         s.defs,
			"responses":       responses,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "api_token_file (admin) or api_read_token_file (reads); none when the agent has no tokens"}},
		},
		"security": []any{map[string]any{"bearer": []any{}}, map[string]any{}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func operationID(r route) string {
	parts := []string{strings.ToLower(r.method)}
	for _, seg := range strings.Split(strings.TrimPrefix(r.path, "/v1/"), "/") {
		seg = strings.Trim(seg, "{}")
		seg = strings.NewReplacer(".", "_", "-", "_").Replace(seg)
		parts = append(parts, seg)
	}
	return strings.Join(parts, "_")
}
