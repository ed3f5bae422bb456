//! Refusals as the API server words them: a `metav1.Status` with code, reason and details.

use serde_json::{Value, json};

/// One `details.causes` entry of a Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

/// A request the server refuses; turned into a Status body in [`ApiError::to_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel through every `Result` of the request path.
    details: Box<Details>,
}

/// `details`: the object concerned and the field causes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Details {
    name: Option<String>,
    group: Option<String>,
    kind: Option<String>,
    causes: Vec<Cause>,
}

/// The object a refusal is about, as Kubernetes names it in messages (`deployments.apps "web"`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// The resource (plural), e.g. `deployments`.
    pub resource: &'a str,
    pub group: &'a str,
    /// The kind, e.g. `Deployment` (used by `Invalid` messages).
    pub kind: &'a str,
    pub name: &'a str,
}

impl Subject<'_> {
    fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    fn about(mut self, subject: &Subject<'_>) -> Self {
        self.details.name = Some(subject.name.to_string());
        self.details.group = Some(subject.group.to_string());
        self.details.kind = Some(subject.resource.to_string());
        self
    }

    /// The field causes.
    #[cfg(test)]
    pub(crate) fn causes(&self) -> &[Cause] {
        &self.details.causes
    }

    /// 400: the request itself is malformed.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 for a path that names no served resource (a CRD that is not installed).
    pub(crate) fn no_such_resource() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 for an object that does not exist.
    pub(crate) fn not_found(subject: &Subject<'_>) -> Self {
        Self::new(
            404,
            "NotFound",
            format!(
                "{} \"{}\" not found",
                subject.qualified_resource(),
                subject.name
            ),
        )
        .about(subject)
    }

    /// 409 AlreadyExists on create.
    pub(crate) fn already_exists(subject: &Subject<'_>) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{}\" already exists",
                subject.qualified_resource(),
                subject.name
            ),
        )
        .about(subject)
    }

    /// 409 Conflict: a stale resourceVersion or a failed precondition.
    pub(crate) fn conflict(subject: &Subject<'_>, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                subject.qualified_resource(),
                subject.name
            ),
        )
        .about(subject)
    }

    /// 409 Conflict: the resourceVersion sent is not the stored one.
    pub(crate) fn stale(subject: &Subject<'_>) -> Self {
        Self::conflict(
            subject,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict of server-side apply: fields another manager owns.
    pub(crate) fn apply_conflict(
        subject: &Subject<'_>,
        message: String,
        causes: Vec<Cause>,
    ) -> Self {
        let mut err = Self::new(409, "Conflict", message).about(subject);
        err.details.causes = causes;
        err
    }

    /// 422 Invalid with field causes.
    pub(crate) fn invalid(subject: &Subject<'_>, causes: Vec<Cause>) -> Self {
        let detail = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect::<Vec<_>>();
        let detail = if detail.len() == 1 {
            detail.concat()
        } else {
            format!("[{}]", detail.join(", "))
        };
        let mut err = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{}\" is invalid: {detail}",
                subject.qualified_kind(),
                subject.name
            ),
        )
        .about(subject);
        err.details.kind = Some(subject.kind.to_string());
        err.details.causes = causes;
        err
    }

    /// 422 for a JSON patch that cannot be applied (a failed `test`, a missing path).
    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 405 for a verb the path does not support.
    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 for a body or patch type the resource does not take.
    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 413 for a body over the size limit.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 410 Expired: a watch from a resourceVersion the history no longer covers.
    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500 InternalError, for requests the real server also fails that way.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `metav1.Status` body.
    pub(crate) fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        let d = &self.details;
        if let Some(name) = &d.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &d.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &d.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !d.causes.is_empty() {
            let causes = d
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect::<Vec<_>>();
            details.insert("causes".into(), Value::Array(causes));
        }
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": details,
            "code": self.code,
        })
    }
}

impl Cause {
    /// `field: Invalid value: <value>: <why>`.
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: &Value,
        why: impl std::fmt::Display,
    ) -> Self {
        Self {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {why}", short_json(value)),
            field: field.into(),
        }
    }

    /// `field: Required value[: why]`.
    pub(crate) fn required(field: impl Into<String>, why: &str) -> Self {
        Self {
            reason: "FieldValueRequired",
            message: if why.is_empty() {
                "Required value".into()
            } else {
                format!("Required value: {why}")
            },
            field: field.into(),
        }
    }

    /// `field: Unsupported value: <value>: supported values: ...`.
    pub(crate) fn not_supported(
        field: impl Into<String>,
        value: &Value,
        supported: &[Value],
    ) -> Self {
        let supported = supported
            .iter()
            .map(short_json)
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {supported}",
                short_json(value)
            ),
            field: field.into(),
        }
    }

    /// `field: Forbidden: why`.
    pub(crate) fn forbidden(field: impl Into<String>, why: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {why}"),
            field: field.into(),
        }
    }
}

/// A value as a short JSON string for messages (long values are cut).
fn short_json(value: &Value) -> String {
    let mut s = value.to_string();
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: Subject<'static> = Subject {
        resource: "deployments",
        group: "apps",
        kind: "Deployment",
        name: "web",
    };

    #[test]
    fn not_found_reads_like_kubernetes() {
        let status = ApiError::not_found(&WEB).to_status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_its_causes() {
        let err = ApiError::invalid(&WEB, vec![Cause::required("metadata.name", "")]);
        let status = err.to_status();
        assert_eq!(
            status["message"],
            "Deployment.apps \"web\" is invalid: metadata.name: Required value"
        );
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
    }
}
