//! Users, sessions and API tokens of the server (SPEC §7.1: the store holds users and
//! sessions). The store keeps what it is given: an argon2 hash of a password, a SHA-256 of a
//! session or API token; hashing and checking belong to the server. Roles are names the
//! server defines (`administrator`, `operator`).

use chrono::{DateTime, Utc};

use crate::{Store, StoreError, on_pool};

/// A user, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// An argon2 PHC string.
    pub password_hash: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// A signed-in session, found by the hash of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    /// The token every form and state-changing request of this session carries.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// An API token, as listed: never the token, only its hash (the first characters of which
/// name it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub token_hash: String,
    pub user_id: i64,
    pub user_name: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

type UserRow = (i64, String, String, String, DateTime<Utc>);

fn user((id, name, password_hash, role, created_at): UserRow) -> User {
    User {
        id,
        name,
        password_hash,
        role,
        created_at,
    }
}

impl Store {
    /// How many users there are (the server creates `admin` when there is none).
    pub async fn count_users(&self) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(p)
            .await)
        .map_err(|e| self.db_error("count users", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Adds a user; `Ok(None)` when the name is taken (names compare case-insensitively).
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<Option<User>, StoreError> {
        if self.user_by_name(name).await?.is_some() {
            return Ok(None);
        }
        let at = crate::now();
        let id: i64 = on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, role, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role)
        .bind(at)
        .fetch_one(p)
        .await)
        .map_err(|e| self.db_error("create a user", e))?;
        Ok(Some(User {
            id,
            name: name.to_string(),
            password_hash: password_hash.to_string(),
            role: role.to_string(),
            created_at: at,
        }))
    }

    /// The user named `name` (case-insensitively).
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, name, password_hash, role, created_at FROM users WHERE lower(name) = lower($1)",
        )
        .bind(name)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read a user", e))?;
        Ok(row.map(user))
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, name, password_hash, role, created_at FROM users ORDER BY name",
        )
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("read users", e))?;
        Ok(rows.into_iter().map(user).collect())
    }

    /// Records a session for `user_id` under the hash of its token.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(crate::now())
        .bind(expires_at)
        .execute(p)
        .await
        .map(drop))
        .map_err(|e| self.db_error("create a session", e))?;
        Ok(())
    }

    /// The session whose token hashes to `token_hash`, unless it has expired (an expired one
    /// is deleted).
    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            String,
            DateTime<Utc>,
            String,
            DateTime<Utc>,
        );
        let row: Option<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT u.id, u.name, u.password_hash, u.role, u.created_at, s.csrf, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read a session", e))?;
        let Some((id, name, hash, role, created_at, csrf, expires_at)) = row else {
            return Ok(None);
        };
        if expires_at <= Utc::now() {
            self.delete_session(token_hash).await?;
            return Ok(None);
        }
        Ok(Some(Session {
            user: user((id, name, hash, role, created_at)),
            csrf,
            expires_at,
        }))
    }

    /// Ends a session (sign out).
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(p)
            .await
            .map(drop))
        .map_err(|e| self.db_error("delete a session", e))?;
        Ok(())
    }

    /// Records an API token (its hash) for `user_id`.
    pub async fn create_api_token(
        &self,
        token_hash: &str,
        user_id: i64,
        name: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(name)
        .bind(crate::now())
        .execute(p)
        .await
        .map(drop))
        .map_err(|e| self.db_error("create an API token", e))?;
        Ok(())
    }

    /// The user an API token (by its hash) acts for.
    pub async fn api_token_user(&self, token_hash: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT u.id, u.name, u.password_hash, u.role, u.created_at
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.db_error("read an API token", e))?;
        Ok(row.map(user))
    }

    /// The API tokens (of `user_id` when given), newest first.
    pub async fn api_tokens(&self, user_id: Option<i64>) -> Result<Vec<ApiToken>, StoreError> {
        type Row = (String, i64, String, String, DateTime<Utc>);
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT t.token_hash, t.user_id, u.name, t.name, t.created_at
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE $1 IS NULL OR t.user_id = $1
             ORDER BY t.created_at DESC, t.name",
        )
        .bind(user_id)
        .fetch_all(p)
        .await)
        .map_err(|e| self.db_error("read the API tokens", e))?;
        Ok(rows
            .into_iter()
            .map(
                |(token_hash, user_id, user_name, name, created_at)| ApiToken {
                    token_hash,
                    user_id,
                    user_name,
                    name,
                    created_at,
                },
            )
            .collect())
    }

    /// Revokes the API token stored under `token_hash`; `false` when there was none.
    pub async fn delete_api_token(&self, token_hash: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, p => sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.db_error("revoke an API token", e))?;
        Ok(n > 0)
    }
}
