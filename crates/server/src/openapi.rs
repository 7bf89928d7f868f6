//! The OpenAPI 3.1 document of the API, served at `/api/openapi.json`. Written out here (not
//! derived from the router) and held to the router by a test: every route is documented and
//! every documented operation is routed.

use serde_json::{Map, Value, json};

/// One documented operation.
#[derive(Debug)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Query parameters: name and description.
    pub query: &'static [(&'static str, &'static str)],
    /// The request body's schema.
    pub body: Option<&'static str>,
    /// The success status and its body's schema.
    pub ok: (u16, &'static str),
}

const fn op(
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    ok: (u16, &'static str),
) -> Operation {
    Operation {
        method,
        path,
        id,
        tag,
        summary,
        query: &[],
        body: None,
        ok,
    }
}

/// Every operation of the API.
pub const OPERATIONS: &[Operation] = &[
    op(
        "get",
        "/api/openapi.json",
        "openapi",
        "meta",
        "This document",
        (200, "Object"),
    ),
    op(
        "get",
        "/api/me",
        "me",
        "users",
        "Who is signed in, and their role",
        (200, "Me"),
    ),
    op(
        "get",
        "/api/configuration",
        "configuration",
        "configuration",
        "The running configuration, its warnings, and the last change refused with its errors (file:line:col)",
        (200, "Configuration"),
    ),
    op(
        "get",
        "/api/connectors",
        "listConnectors",
        "connectors",
        "Every connector",
        (200, "ConnectorList"),
    ),
    op(
        "get",
        "/api/connectors/{connector}",
        "getConnector",
        "connectors",
        "A connector and its connections with their schema state",
        (200, "ConnectorDetail"),
    ),
    op(
        "post",
        "/api/connectors/{connector}/refresh-schemas",
        "refreshConnectorSchemas",
        "schema",
        "Refresh all schemas: every connection of the connector, continuing past failures",
        (200, "RefreshAll"),
    ),
    op(
        "get",
        "/api/connections",
        "listConnections",
        "connections",
        "Every connection with its schema state",
        (200, "ConnectionList"),
    ),
    Operation {
        body: Some("NewConnection"),
        ..op(
            "post",
            "/api/connections",
            "createConnection",
            "connections",
            "Create a connection (administrators only): its Connection element goes into the connector's file, its settings into appsettings.agent.json (secured values encrypted into appsettings.encrypted.agent.json); the change must pass check; the schema is then refreshed when the package has one",
            (201, "ConnectionDetail"),
        )
    },
    op(
        "get",
        "/api/packages",
        "listPackages",
        "connections",
        "The packages this build runs, with their capabilities and settings",
        (200, "PackageList"),
    ),
    Operation {
        body: Some("SettingsPatch"),
        ..op(
            "patch",
            "/api/connections/{connection}/settings",
            "updateSettings",
            "connections",
            "Change a connection's settings in place (administrators only); 422 with the errors when the change does not pass check. The answer is the connection with `changes` (the settings changed) and `warnings` (secured values bound to a destination the change left: the agent refuses them until entered again)",
            (200, "ConnectionDetail"),
        )
    },
    op(
        "get",
        "/api/connections/{connection}",
        "getConnection",
        "connections",
        "A connection with its settings; each secured value as {\"secured\": true, \"set\": bool}",
        (200, "ConnectionDetail"),
    ),
    op(
        "delete",
        "/api/connections/{connection}",
        "deleteConnection",
        "connections",
        "Delete a connection (administrators only): its element and its settings leave the files, in place; refused (422, with the errors) while a mapping, table or task still refers to it",
        (200, "Deleted"),
    ),
    op(
        "get",
        "/api/connections/{connection}/schema",
        "getSchema",
        "schema",
        "The connection's schema state and its last good snapshot",
        (200, "Schema"),
    ),
    op(
        "post",
        "/api/connections/{connection}/refresh-schema",
        "refreshSchema",
        "schema",
        "Refresh schema: read the tables and columns from the system and record them (or the failure)",
        (200, "RefreshResult"),
    ),
    op(
        "post",
        "/api/connections/{connection}/check",
        "checkConnection",
        "connections",
        "Check connection: whether the system is reachable with the current settings",
        (200, "CheckResult"),
    ),
    op(
        "post",
        "/api/connections/{connection}/export",
        "exportConnection",
        "connections",
        "Export now: export the connection into <work>/ExportOutput",
        (200, "ExportReport"),
    ),
    op(
        "get",
        "/api/entity-types",
        "listEntityTypes",
        "resources",
        "Every entity type with its properties",
        (200, "EntityTypeList"),
    ),
    Operation {
        query: &[(
            "q",
            "text the key or a value contains (case-insensitive); empty for all",
        )],
        ..op(
            "get",
            "/api/entity-types/{entityType}/resources",
            "searchResources",
            "resources",
            "Search the resources of an entity type (the first 100 found, and the total)",
            (200, "SearchResult"),
        )
    },
    op(
        "get",
        "/api/entity-types/{entityType}/resources/{key}",
        "getResource",
        "resources",
        "A resource with its properties and links",
        (200, "Resource"),
    ),
    op(
        "get",
        "/api/entity-type-mappings",
        "listMappings",
        "mappings",
        "The entity type mappings",
        (200, "MappingList"),
    ),
    op(
        "get",
        "/api/entity-type-mappings/{entityType}",
        "getMapping",
        "mappings",
        "One entity type mapping for the editor: its properties, its schema drift, the Source tables (of the refreshed schemas of the connector's connections) with their columns, and whether it can be saved",
        (200, "MappingEditor"),
    ),
    Operation {
        body: Some("MappingEdit"),
        ..op(
            "put",
            "/api/entity-type-mappings/{entityType}",
            "saveMapping",
            "mappings",
            "Save an entity type mapping (administrators only): Source and Source Columns from a refreshed schema; that element only is edited in place, and the change must pass check",
            (200, "MappingEditor"),
        )
    },
    Operation {
        query: &[(
            "limit",
            "entries, newest first (200 by default, at most 10,000)",
        )],
        ..op(
            "get",
            "/api/audit",
            "audit",
            "users",
            "The audit log, newest first",
            (200, "AuditList"),
        )
    },
    Operation {
        body: Some("NewToken"),
        ..op(
            "post",
            "/api/tokens",
            "createToken",
            "users",
            "An API token for the signed-in user (shown once)",
            (201, "Token"),
        )
    },
    op(
        "get",
        "/api/tokens",
        "listTokens",
        "users",
        "The API tokens: one's own, or every one for an administrator; never a token, only its name, owner, time and identifier",
        (200, "TokenList"),
    ),
    op(
        "delete",
        "/api/tokens/{token}",
        "revokeToken",
        "users",
        "Revoke an API token by its identifier: one's own, or any for an administrator (audited)",
        (200, "Revoked"),
    ),
    Operation {
        body: Some("NewUser"),
        ..op(
            "post",
            "/api/users",
            "createUser",
            "users",
            "Add a user (administrators only)",
            (201, "Me"),
        )
    },
    op(
        "get",
        "/api/jobs",
        "listJobs",
        "jobs",
        "Every job of the configuration: its tasks in the order they run, its crontab, its next scheduled run and its last run",
        (200, "JobList"),
    ),
    op(
        "get",
        "/api/jobs/{job}/runs",
        "listJobRuns",
        "jobs",
        "The job's runs, newest first (the last 50), without their logs",
        (200, "JobRunList"),
    ),
    Operation {
        body: Some("NewJobRun"),
        ..op(
            "post",
            "/api/jobs/{job}/runs",
            "runJob",
            "jobs",
            "Run now (operators and administrators): starts a run in the background and answers 202 with its id and URL (also in Location) once it is recorded; 409 while the job runs already. A dry run changes nothing. Audited",
            (202, "JobRunStarted"),
        )
    },
    op(
        "get",
        "/api/job-runs/{run}",
        "getJobRun",
        "jobs",
        "A job run: its state (Running, Succeeded, Failed, Interrupted), its log so far, where it is while it runs, and its report once it ended",
        (200, "JobRun"),
    ),
    Operation {
        query: &[
            (
                "state",
                "only orders in this state: Pending, Transmitted, Executed, Errored or Verified",
            ),
            ("resourceType", "only orders of this resource type"),
            ("limit", "at most this many, the newest (default 200)"),
        ],
        ..op(
            "get",
            "/api/orders",
            "listOrders",
            "orders",
            "Provisioning orders, newest first, with their state and the system's message",
            (200, "OrderList"),
        )
    },
    op(
        "get",
        "/api/orders/{order}",
        "getOrder",
        "orders",
        "One provisioning order with the order as packages receive it",
        (200, "Order"),
    ),
    Operation {
        query: &[("all", "true: closed tickets too")],
        ..op(
            "get",
            "/api/tickets",
            "listTickets",
            "tickets",
            "Tickets (orders handed to a Usercube.Manual connection): the open ones, oldest first, with what to do",
            (200, "TicketList"),
        )
    },
    Operation {
        body: Some("CloseTicket"),
        ..op(
            "post",
            "/api/tickets/{ticket}/complete",
            "completeTicket",
            "tickets",
            "Close an open ticket (operators and administrators): done (Executed), or failed with the reason given as error (Errored). Audited",
            (200, "Ticket"),
        )
    },
    Operation {
        body: Some("AgentEnrol"),
        ..op(
            "post",
            "/api/agent/enrol",
            "agentEnrol",
            "agent protocol",
            "A remote agent registers its age public key: Pending until an administrator approves it, or Approved with a one-time enrolment token. No user authentication; rate limited; over plain HTTP from loopback only",
            (200, "AgentEnrolled"),
        )
    },
    Operation {
        body: Some("AgentSessionRequest"),
        ..op(
            "post",
            "/api/agent/session",
            "agentSession",
            "agent protocol",
            "An approved agent's session: a bearer token encrypted to its registered key (only its private key reads it). Rate limited",
            (200, "AgentSession"),
        )
    },
    op(
        "get",
        "/api/agent/configuration",
        "agentConfiguration",
        "agent protocol",
        "The configuration for the calling agent (agent session): the XML files and the settings of its own connections only, secured values as ciphertext to its key",
        (200, "Object"),
    ),
    Operation {
        query: &[(
            "wait",
            "seconds to wait for work (25 by default, at most 60)",
        )],
        ..op(
            "get",
            "/api/agent/work",
            "agentWork",
            "agent protocol",
            "Long poll for the calling agent's next task (agent session): the task, leased to it until leaseExpiresMs (200), or nothing (204)",
            (200, "AgentWorkItem"),
        )
    },
    Operation {
        body: Some("AgentLease"),
        ..op(
            "post",
            "/api/agent/tasks/{task}/renew",
            "agentRenew",
            "agent protocol",
            "Extend the lease on one of the calling agent's tasks (409 when the lease was lost; 403 for another agent's task)",
            (200, "Object"),
        )
    },
    Operation {
        body: Some("AgentTaskResult"),
        ..op(
            "post",
            "/api/agent/tasks/{task}/result",
            "agentResult",
            "agent protocol",
            "A task's answer, accepted once from the lease that holds it (409 otherwise; 403 for another agent's task). An export's tables, sent before with PUT /api/agent/tasks/{task}/tables/{table}?lease=L (gzip, x-idlink-sha256 header), are committed with its cookie as one set",
            (200, "Object"),
        )
    },
    op(
        "get",
        "/api/agents",
        "listAgents",
        "agents",
        "The enrolled agents with their state (Pending, Approved, Revoked) and last contact, and this server's embedded agent",
        (200, "AgentList"),
    ),
    op(
        "post",
        "/api/agents/{agent}/approve",
        "approveAgent",
        "agents",
        "Approve a Pending agent (administrators). A revoked agent is never approved again. Audited",
        (200, "Agent"),
    ),
    op(
        "post",
        "/api/agents/{agent}/revoke",
        "revokeAgent",
        "agents",
        "Revoke an agent (administrators): its sessions end at once and it is refused from then on. Audited",
        (200, "Agent"),
    ),
    Operation {
        body: Some("NewEnrolmentToken"),
        ..op(
            "post",
            "/api/agent-tokens",
            "createEnrolmentToken",
            "agents",
            "A one-time enrolment token (administrators), for one agent or any, shown once. Audited",
            (201, "EnrolmentToken"),
        )
    },
    Operation {
        query: &[
            ("agent", "one agent's tasks only"),
            ("limit", "at most this many, newest first (200)"),
        ],
        ..op(
            "get",
            "/api/agent-tasks",
            "listAgentTasks",
            "agents",
            "The agent work queue, newest first: kind, connection, state (Queued, Leased, Done, Errored), attempts, holder, result or error",
            (200, "AgentTaskList"),
        )
    },
    Operation {
        body: Some("NewAgentTask"),
        ..op(
            "post",
            "/api/agent-tasks",
            "queueAgentTask",
            "agents",
            "Queue work (export, schema, check) on a connection for the agent that runs it (operators and administrators); answers at once (202)",
            (202, "AgentTask"),
        )
    },
    op(
        "get",
        "/api/agent-tasks/{task}",
        "getAgentTask",
        "agents",
        "One task of the agent work queue",
        (200, "AgentTask"),
    ),
];

fn schemas() -> Value {
    let mut all = base_schemas();
    for more in [editing_schemas(), job_schemas(), agent_schemas()] {
        if let (Value::Object(all), Value::Object(more)) = (&mut all, more) {
            all.extend(more);
        }
    }
    all
}

/// Agents and their protocol.
fn agent_schemas() -> Value {
    let s = |t: &str| json!({ "type": t });
    let string = s("string");
    let opt_string = json!({ "type": ["string", "null"] });
    let agent = json!({ "agent": string, "publicKey": string,
        "state": { "enum": ["Pending", "Approved", "Revoked"] }, "enrolledAt": string,
        "decidedBy": opt_string, "decidedAt": opt_string, "lastSeen": opt_string });
    let task = json!({ "id": s("integer"), "agent": string, "kind": { "enum": ["export", "schema", "check"] },
        "connection": string, "state": { "enum": ["Queued", "Leased", "Done", "Errored"] },
        "attempts": s("integer"), "leasedBy": opt_string, "result": {}, "error": opt_string,
        "createdMs": s("integer"), "claimedMs": { "type": ["integer", "null"] },
        "finishedMs": { "type": ["integer", "null"] },
        "serverMs": { "type": "integer", "description": "Milliseconds the server spent receiving the task's tables and committing its result" } });
    json!({
        "AgentEnrol": { "type": "object", "required": ["agent", "publicKey"], "properties": {
            "agent": string, "publicKey": string, "token": string } },
        "AgentEnrolled": { "type": "object", "properties": { "agent": string,
            "state": { "enum": ["Pending", "Approved"] }, "message": string } },
        "AgentSessionRequest": { "type": "object", "required": ["agent"], "properties": { "agent": string } },
        "AgentSession": { "type": "object", "properties": { "sealedToken": string, "expiresInSecs": s("integer") } },
        "AgentWorkItem": { "type": "object", "properties": { "id": s("integer"), "lease": string,
            "leaseExpiresMs": s("integer"), "kind": string, "connection": string, "attempt": s("integer"),
            "configVersion": string, "payload": {} } },
        "AgentLease": { "type": "object", "required": ["lease"], "properties": { "lease": string } },
        "AgentTaskResult": { "type": "object", "required": ["lease"], "properties": {
            "lease": string, "ok": {}, "error": string, "retryable": s("boolean") } },
        "Agent": { "type": "object", "properties": agent },
        "AgentList": { "type": "object", "properties": { "localAgent": string,
            "agents": { "type": "array", "items": { "$ref": "#/components/schemas/Agent" } } } },
        "NewEnrolmentToken": { "type": "object", "properties": { "agent": string, "hours": s("integer") } },
        "EnrolmentToken": { "type": "object", "properties": { "token": string, "agent": opt_string, "expiresMs": s("integer") } },
        "AgentTask": { "type": "object", "properties": task },
        "AgentTaskList": { "type": "array", "items": { "$ref": "#/components/schemas/AgentTask" } },
        "NewAgentTask": { "type": "object", "required": ["connection", "kind"], "properties": {
            "connection": string, "kind": { "enum": ["export", "schema", "check"] } } },
    })
}

/// Jobs, orders and tickets.
fn job_schemas() -> Value {
    let s = |t: &str| json!({ "type": t });
    let string = s("string");
    let opt_string = json!({ "type": ["string", "null"] });
    let run_state = json!({ "enum": ["Running", "Succeeded", "Failed", "Interrupted"] });
    let order_state =
        json!({ "enum": ["Pending", "Transmitted", "Executed", "Errored", "Verified"] });
    let totals = json!({ "type": "object", "properties": {
        "exported_rows": s("integer"), "inserted": s("integer"), "updated": s("integer"), "deleted": s("integer"),
        "orders_generated": s("integer"), "orders_executed": s("integer"), "orders_errored": s("integer"),
        "orders_transmitted": s("integer"), "orders_verified": s("integer") } });
    let run_summary = json!({ "id": s("integer"), "job": string, "state": run_state, "dryRun": s("boolean"),
        "startedAt": string, "finishedAt": opt_string, "url": string, "page": string,
        "duration": s("number"), "totals": totals });
    let mut run_full = run_summary.clone();
    if let Value::Object(m) = &mut run_full {
        m.insert("log".into(), json!({ "type": "string", "description": "One line per event, growing while the run goes on" }));
        m.insert(
            "progress".into(),
            json!({ "type": ["object", "null"], "description": "While Running: the task under way",
            "properties": { "task": s("integer"), "of": s("integer"), "name": string } }),
        );
        m.insert("report".into(), json!({ "type": ["object", "null"], "description": "Once the run ended", "properties": {
            "job": string, "run": s("integer"), "dry_run": s("boolean"), "state": { "enum": ["Succeeded", "Failed"] },
            "duration": s("number"), "totals": totals,
            "tasks": { "type": "array", "items": { "type": "object", "properties": {
                "kind": string, "name": string, "status": { "enum": ["Succeeded", "Failed", "Skipped", "Planned"] },
                "summary": string, "error": opt_string, "duration": s("number"), "details": {} } } } } }));
    }
    let order = json!({ "id": s("integer"), "state": order_state, "changeType": { "enum": ["Added", "Modified", "Deleted"] },
        "resourceType": string, "connection": opt_string, "owner": opt_string, "target": opt_string,
        "message": string, "createdAt": string, "updatedAt": string,
        "order": { "type": "object", "description": "The order as packages receive it (ChangeType, ResourceType, Owner, Resource, Changes)" } });
    let mut ticket = order.clone();
    if let Value::Object(m) = &mut ticket {
        m.insert(
            "todo".into(),
            json!({ "type": "string", "description": "What the person has to do" }),
        );
    }
    json!({
        "JobList": { "type": "array", "items": { "type": "object", "properties": {
            "id": string, "name": string, "crontab": opt_string, "agent": opt_string,
            "schedule": { "type": ["object", "null"], "description": "When the job runs by itself (null when it has no CrontabExpression)", "properties": {
                "crontab": string,
                "timeZone": { "type": "string", "description": "The IANA time zone the crontab's times are read in (idlink serve --time-zone; UTC by default)" },
                "nextRunLocal": { "type": ["string", "null"], "description": "The next run on that zone's clock, e.g. 2025-03-30 03:00 CEST" } } },
            "nextRun": { "type": ["string", "null"], "format": "date-time", "description": "The next scheduled run, RFC 3339 UTC; null when the job is not scheduled" },
            "tasks": { "type": "array", "items": { "type": "object", "properties": { "kind": string, "name": string, "target": string } } },
            "lastRun": { "oneOf": [ { "type": "null" }, { "$ref": "#/components/schemas/JobRunSummary" } ] } } } },
        "JobRunSummary": { "type": "object", "properties": run_summary },
        "JobRunList": { "type": "array", "items": { "$ref": "#/components/schemas/JobRunSummary" } },
        "JobRun": { "type": "object", "properties": run_full },
        "NewJobRun": { "type": "object", "properties": { "dryRun": { "type": "boolean", "default": false } } },
        "JobRunStarted": { "type": "object", "properties": { "run": s("integer"), "job": string, "dryRun": s("boolean"),
            "state": run_state, "url": string, "page": string } },
        "Order": { "type": "object", "properties": order },
        "OrderList": { "type": "array", "items": { "$ref": "#/components/schemas/Order" } },
        "Ticket": { "type": "object", "properties": ticket },
        "TicketList": { "type": "array", "items": { "$ref": "#/components/schemas/Ticket" } },
        "CloseTicket": { "type": "object", "properties": { "error": { "type": "string",
            "description": "The ticket could not be done: why. Absent: it was done" } } },
    })
}

/// What editing the configuration takes.
fn editing_schemas() -> Value {
    let s = |t: &str| json!({ "type": t });
    let string = s("string");
    json!({
        "MappingEditor": { "type": "object", "properties": { "entityType": string, "connector": string, "connectionTable": string,
            "location": string, "properties": { "type": "array", "items": { "type": "object" } },
            "drift": { "type": "array", "items": string, "description": "What the latest schema lacks of what the mapping reads" },
            "entityTypeProperties": { "type": "array", "items": string },
            "sources": { "type": "array", "items": { "type": "object", "properties": { "connection": string, "table": string,
                "columns": { "type": "array", "items": string }, "refreshedAt": string } } },
            "canSave": s("boolean"), "message": string, "changes": { "type": "array", "items": string } } },
        "MappingEdit": { "type": "object", "required": ["connectionTable", "properties"], "properties": { "connectionTable": string,
            "properties": { "type": "array", "items": { "type": "object", "required": ["property", "connectionColumn"], "properties": {
                "property": string, "connectionColumn": string, "isPrimaryKey": s("boolean"), "isUniqueKey": s("boolean"), "format": string } } } } },
        "Deleted": { "type": "object", "properties": { "deleted": string } },
        "TokenList": { "type": "array", "items": { "type": "object", "properties": { "id": string, "name": string, "user": string,
            "createdAt": string, "mine": s("boolean") } } },
        "Revoked": { "type": "object", "properties": { "id": string, "name": string, "user": string, "revoked": s("boolean") } },
        "NewConnection": { "type": "object", "required": ["identifier", "name", "connector", "package"], "properties": {
            "identifier": string, "name": string, "connector": string, "package": string,
            "settings": { "$ref": "#/components/schemas/SettingsPatch" } } },
        "SettingsPatch": { "type": "object", "description": "Setting name to value; null removes a setting. A secured setting takes its new value as a string (encrypted to the agent's public key before it is written), null deletes it, an empty string or a SecuredValue keeps it. Key-value settings merge pair by pair (null removes a pair); arrays of objects merge item by item, a shorter array removing the last items." },
        "PackageList": { "type": "array", "items": { "type": "object", "properties": { "id": string, "name": string,
            "capabilities": { "type": "object" },
            "settings": { "type": "array", "items": { "type": "object", "properties": { "name": string, "kind": string,
                "required": s("boolean"), "secured": s("boolean"), "doc": string } } } } } },
    })
}

fn base_schemas() -> Value {
    let s = |t: &str| json!({ "type": t });
    let string = s("string");
    let opt_string = json!({ "type": ["string", "null"] });
    json!({
        "Object": { "type": "object" },
        "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
            "status": s("integer"), "message": string,
            "problems": { "type": "array", "items": { "$ref": "#/components/schemas/Problem" } } } } } },
        "Me": { "type": "object", "properties": { "name": string, "role": { "enum": ["administrator", "operator", "viewer"] } } },
        "Problem": { "type": "object", "properties": { "rule": string, "severity": string, "location": string, "message": string, "hint": string } },
        "Configuration": { "type": "object", "properties": {
            "configDir": string, "running": s("boolean"), "loadedAt": opt_string,
            "warnings": { "type": "array", "items": { "$ref": "#/components/schemas/Problem" } },
            "rejected": { "type": ["object", "null"], "properties": { "at": string,
                "errors": { "type": "array", "items": { "$ref": "#/components/schemas/Problem" } } } } } },
        "Connector": { "type": "object", "properties": { "id": string, "name": string, "connections": s("integer") } },
        "ConnectorList": { "type": "array", "items": { "$ref": "#/components/schemas/Connector" } },
        "SchemaState": { "type": "object", "properties": {
            "state": { "enum": ["none", "never-refreshed", "refreshed", "failed"] },
            "message": string, "refreshedAt": string, "failedAt": string, "tables": s("integer"), "columns": s("integer") } },
        "Connection": { "type": "object", "properties": {
            "id": string, "name": string, "connector": string, "package": string, "available": s("boolean"),
            "capabilities": { "type": "object", "properties": { "export": s("boolean"), "incremental": s("boolean"), "fulfill": s("boolean"), "schema": s("boolean") } },
            "schema": { "$ref": "#/components/schemas/SchemaState" } } },
        "ConnectionList": { "type": "array", "items": { "$ref": "#/components/schemas/Connection" } },
        "ConnectorDetail": { "type": "object", "properties": { "id": string, "name": string,
            "connections": { "$ref": "#/components/schemas/ConnectionList" } } },
        "SecuredValue": { "type": "object", "description": "A secured setting: never its value", "properties": {
            "secured": { "const": true }, "set": s("boolean") } },
        "ConnectionDetail": { "allOf": [ { "$ref": "#/components/schemas/Connection" }, { "type": "object", "properties": {
            "settings": { "type": "object", "description": "The settings as written; each secured value is a SecuredValue" } } } ] },
        "Schema": { "type": "object", "properties": { "connection": string, "package": string,
            "state": { "$ref": "#/components/schemas/SchemaState" },
            "tables": { "type": "array", "items": { "type": "object", "properties": { "name": string,
                "columns": { "type": "array", "items": { "type": "object", "properties": {
                    "name": string, "type": string, "key": string, "multivalued": s("boolean") } } } } } } } },
        "RefreshResult": { "type": "object", "properties": { "connection": string, "package": string,
            "outcome": { "enum": ["refreshed", "none", "failed"] }, "refreshedAt": string, "failedAt": string,
            "tables": s("integer"), "columns": s("integer"), "kind": string, "message": string } },
        "RefreshAll": { "type": "object", "properties": { "connector": string,
            "results": { "type": "array", "items": { "$ref": "#/components/schemas/RefreshResult" } } } },
        "CheckResult": { "type": "object", "properties": { "connection": string, "reachable": s("boolean"), "message": string } },
        "ExportReport": { "type": "object", "properties": { "connection": string, "package": string, "incremental": s("boolean"),
            "duration": s("number"), "cookie": opt_string,
            "tables": { "type": "array", "items": { "type": "object", "properties": { "name": string, "file": string, "rows": s("integer"), "bytes": s("integer") } } },
            "notes": { "type": "array", "items": string, "description": "What the export noticed that its user should know (a stray quote that swallowed rows, staging folders removed)" } } },
        "EntityTypeList": { "type": "array", "items": { "type": "object", "properties": { "id": string, "name": string,
            "properties": { "type": "array", "items": string } } } },
        "SearchResult": { "type": "object", "properties": { "entityType": string, "total": s("integer"),
            "resources": { "type": "array", "items": { "type": "object", "properties": { "key": string, "properties": { "type": "object" } } } } } },
        "Resource": { "type": "object", "properties": { "entityType": string, "key": string, "properties": { "type": "object" },
            "links": { "type": "array", "items": { "type": "object", "properties": { "association": string, "property": string, "entityType": string,
                "keys": { "type": "array", "items": string } } } } } },
        "MappingList": { "type": "array", "items": { "type": "object", "properties": { "entityType": string, "connector": string,
            "connectionTable": string, "location": string,
            "properties": { "type": "array", "items": { "type": "object", "properties": { "property": string, "connectionColumn": string,
                "isPrimaryKey": s("boolean"), "isUniqueKey": s("boolean") } } },
            "drift": { "type": "array", "items": string } } } },
        "AuditList": { "type": "array", "items": { "type": "object", "properties": { "at": string, "actor": string, "action": string, "target": string, "detail": string } } },
        "NewToken": { "type": "object", "required": ["name"], "properties": { "name": string } },
        "Token": { "type": "object", "properties": { "name": string, "token": string, "user": string, "id": string } },
        "NewUser": { "type": "object", "required": ["name", "password", "role"], "properties": {
            "name": string, "password": { "type": "string", "minLength": crate::auth::MIN_PASSWORD },
            "role": { "enum": ["administrator", "operator", "viewer"] } } },
    })
}

/// The names between braces in a path.
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in OPERATIONS {
        let mut params: Vec<Value> = path_parameters(o.path)
            .into_iter()
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(o.query.iter().map(|(name, description)| {
            json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } })
        }));
        let error = json!({ "description": "An error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
        let mut operation = json!({
            "operationId": o.id,
            "tags": [o.tag],
            "summary": o.summary,
            "responses": {
                o.ok.0.to_string(): { "description": "Success", "content": { "application/json": {
                    "schema": { "$ref": format!("#/components/schemas/{}", o.ok.1) } } } },
                "default": error,
            },
        });
        if !params.is_empty() {
            operation["parameters"] = Value::Array(params);
        }
        if let Some(body) = o.body {
            operation["requestBody"] = json!({ "required": true, "content": { "application/json": {
                "schema": { "$ref": format!("#/components/schemas/{body}") } } } });
        }
        if o.method != "get" {
            operation["description"] = json!(
                "With a session cookie, send the session's CSRF token in the X-CSRF-Token header; with an API token, no CSRF token is needed."
            );
        }
        let entry = paths
            .entry(o.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[o.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "idlink API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Connectors, connections, schemas, exports, resources, entity type mappings, jobs, provisioning orders and tickets of the running configuration. Secured setting values are never returned.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE },
                "token": { "type": "http", "scheme": "bearer" },
            },
        },
        "security": [ { "session": [] }, { "token": [] } ],
    })
}
