//! What every dialect's handlers share, as axum extractors that reject in the calling API's
//! own error shape: the calling client ([`Caller`]), the body ([`Body`]), the query
//! ([`QueryOf`]) and the path's parameters ([`PathOf`]). A handler that takes them has no
//! authentication preamble and no rejection mapping of its own, and no request reaches a
//! handler's body unauthenticated: axum runs `Caller` (a parts extractor) before the body is
//! read.

use std::marker::PhantomData;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Query, Request},
    http::{StatusCode, request::Parts},
    response::IntoResponse,
};
use serde::de::DeserializeOwned;

use crate::api::{AppState, auth::AuthError, body};

/// One documented API's way of saying no.
pub trait Dialect: Send + Sync + 'static {
    /// The API's error response.
    type Error: IntoResponse + Send;

    /// A missing or unknown key, in the API's words.
    fn unauthenticated(error: AuthError) -> Self::Error;

    /// A body or query that could not be read (too large, malformed), with its status.
    fn rejected(status: StatusCode, message: String) -> Self::Error;

    /// A body that is not the JSON the route takes.
    fn malformed_json(message: String) -> Self::Error {
        Self::rejected(StatusCode::BAD_REQUEST, message)
    }
}

/// The client whose key the request carries.
pub struct Caller<D> {
    /// The client id every task and asset of the request belongs to.
    pub client_id: String,
    dialect: PhantomData<D>,
}

impl<D: Dialect> FromRequestParts<AppState> for Caller<D> {
    type Rejection = D::Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match state.auth.client(&parts.headers).await {
            Ok(client_id) => Ok(Self {
                client_id,
                dialect: PhantomData,
            }),
            Err(error) => Err(D::unauthenticated(error)),
        }
    }
}

/// The request body, read whole within the JSON limit (`limits.max_body_bytes`) whatever
/// the route's `DefaultBodyLimit` (which governs only multipart uploads).
pub struct Body<D> {
    /// The bytes.
    pub bytes: Bytes,
    dialect: PhantomData<D>,
}

impl<D: Dialect> Body<D> {
    /// The body parsed as JSON, refused in the dialect's shape when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, D::Error> {
        body::parse_json(&self.bytes).map_err(D::malformed_json)
    }

    /// The body as a JSON object (kept as a `Value`), refused in the dialect's shape when it
    /// is not JSON or is JSON of another kind (an array, a number).
    pub fn object(&self) -> Result<serde_json::Value, D::Error> {
        let value: serde_json::Value = self.json()?;
        if !value.is_object() {
            return Err(D::malformed_json(
                "Request body must be a JSON object.".into(),
            ));
        }
        Ok(value)
    }

    /// The body parsed straight into `T` (no `Value` in between): malformed JSON refused as
    /// [`Body::json`] refuses it, well-formed JSON of another shape as `wrong_shape` says,
    /// given where and what was wrong in the client's terms ([`body::WrongShape`]).
    pub fn parse<T: DeserializeOwned>(
        &self,
        wrong_shape: impl FnOnce(body::WrongShape) -> D::Error,
    ) -> Result<T, D::Error> {
        serde_json::from_slice(&self.bytes).map_err(|error| {
            if error.is_data() {
                wrong_shape(body::WrongShape::of::<T>(&self.bytes, &error))
            } else {
                D::malformed_json(body::malformed(&self.bytes, &error))
            }
        })
    }
}

impl<D: Dialect> FromRequest<AppState> for Body<D> {
    type Rejection = D::Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match body::read(request, state.config.limits.max_body_bytes).await {
            Ok(bytes) => Ok(Self {
                bytes,
                dialect: PhantomData,
            }),
            Err(unreadable) => {
                let (status, message) = unreadable.parts();
                Err(D::rejected(status, message))
            }
        }
    }
}

/// The query string parsed as `T`.
pub struct QueryOf<T, D> {
    /// The parsed query.
    pub query: T,
    dialect: PhantomData<D>,
}

impl<T: DeserializeOwned + Send, D: Dialect> FromRequestParts<AppState> for QueryOf<T, D> {
    type Rejection = D::Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(Self {
                query,
                dialect: PhantomData,
            }),
            Err(rejection) => Err(D::rejected(StatusCode::BAD_REQUEST, rejection.body_text())),
        }
    }
}

/// The path's parameters parsed as `T` (an id that is not UTF-8, say, is refused in the
/// dialect's shape rather than axum's plain text).
pub struct PathOf<T, D> {
    /// The parsed parameters.
    pub params: T,
    dialect: PhantomData<D>,
}

impl<T: DeserializeOwned + Send, D: Dialect> FromRequestParts<AppState> for PathOf<T, D> {
    type Rejection = D::Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self {
                params,
                dialect: PhantomData,
            }),
            Err(rejection) => Err(D::rejected(rejection.status(), rejection.body_text())),
        }
    }
}

// The extractors are documented as what they read: the caller adds nothing to an operation (the
// document describes the key headers once), a body is named beside its handler, and a query
// or a path lists its parameters as axum's own `Query<T>` and `Path<T>` do.
impl<D> aide::OperationInput for Caller<D> {}

impl<D> aide::OperationInput for Body<D> {}

impl<T: schemars::JsonSchema, D> aide::OperationInput for QueryOf<T, D> {
    fn operation_input(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        Query::<T>::operation_input(ctx, operation);
    }
}

impl<T: schemars::JsonSchema, D> aide::OperationInput for PathOf<T, D> {
    fn operation_input(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        Path::<T>::operation_input(ctx, operation);
    }
}
