//! Signing in over the PostgreSQL protocol: SCRAM-SHA-256 (and its
//! channel-bound `-PLUS` variant over TLS) against the verifiers the user
//! store keeps, the only method offered; failures are throttled and audited.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::sink::Sink;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{
    AuthDriver, AuthOutcome, AuthSource, DefaultServerParameterProvider, LoginInfo, Password,
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::{SERVER_VERSION, Session, Shared};
use crate::users::{Role, SCRAM_ITERATIONS};

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// The startup handshake of every connection.
pub(super) struct Startup {
    shared: Arc<Shared>,
    driver: AuthDriver<DefaultServerParameterProvider, Role>,
    scram: ScramAuth<Role>,
}

impl Startup {
    /// With `cert_pem`, SCRAM also offers channel binding to that certificate.
    /// Signed-in connections are registered with `connections` for cancel requests.
    pub(super) fn new(
        shared: Arc<Shared>,
        cert_pem: Option<&[u8]>,
        connections: Arc<ConnectionManager>,
    ) -> Self {
        let mut scram = ScramAuth::new(Arc::new(Verifiers {
            shared: shared.clone(),
        }) as Arc<dyn AuthSource<Role>>);
        if let Some(pem) = cert_pem
            && let Err(e) = scram.configure_certificate(pem)
        {
            tracing::warn!(error = %e, "SCRAM channel binding is off: the certificate cannot be hashed for it");
        }
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_owned();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        parameters.time_zone = "UTC".to_owned();
        Startup {
            shared,
            driver: AuthDriver::new(parameters).with_connection_manager(connections),
            scram,
        }
    }

    fn user_of(client: &impl ClientInfo) -> String {
        client
            .metadata()
            .get(pgwire::api::METADATA_USER)
            .cloned()
            .unwrap_or_default()
    }

    /// The error a failed login ends with. Users whose password predates
    /// SCRAM verifiers are told how to get one; that they exist is the one
    /// thing this gives away.
    async fn refusal(&self, user: &str) -> PgWireError {
        let name = user.to_owned();
        let legacy = self
            .shared
            .blocking(move |shared| super::lock(&shared.users).scram_verifier(&name))
            .await;
        let mut message = format!("password authentication failed for user \"{user}\"");
        if let Some(Ok(Some((_, None)))) = legacy {
            message.push_str(&format!(
                ": pipewatch keeps no SCRAM-SHA-256 verifier for this user yet (the password \
                 predates the PostgreSQL endpoint); set it again with `pipewatch users passwd {user}`"
            ));
        }
        fatal("28P01", message)
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let address = client.socket_addr().ip().to_string();
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.shared.settings.tls.is_some() && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "pipewatch accepts PostgreSQL clients over TLS only: connect with sslmode=require"
                            .to_owned(),
                    ));
                }
                let user = Self::user_of(client);
                if user.is_empty() {
                    return Err(PgWireError::UserNameRequired);
                }
                if let Some(wait) = self.shared.throttle.check(&user, &address, Instant::now()) {
                    self.shared
                        .audit(
                            &user,
                            &address,
                            "login",
                            None,
                            "refused",
                            Some("too many failed sign-ins (pgwire)".to_owned()),
                        )
                        .await;
                    let minutes = wait.as_secs().div_ceil(60).max(1);
                    return Err(fatal(
                        "28000",
                        format!(
                            "too many failed sign-ins for user \"{user}\"; try again in {minutes} minute(s)"
                        ),
                    ));
                }
                self.driver
                    .begin_authentication(client, self.scram.create())
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let user = Self::user_of(client);
                match self.driver.advance_authentication(client, message).await {
                    Ok(AuthOutcome::InProgress) => Ok(()),
                    Ok(AuthOutcome::Authenticated {
                        identity: Some(role),
                        final_message,
                    }) => {
                        self.shared.throttle.succeeded(&user);
                        self.shared
                            .audit(
                                &user,
                                &address,
                                "login",
                                None,
                                "ok",
                                Some(format!("{role} (pgwire)")),
                            )
                            .await;
                        client.session_extensions().insert(Session {
                            user,
                            role,
                            address,
                        });
                        self.driver
                            .complete_authentication(client, final_message)
                            .await
                    }
                    outcome => {
                        let detail = match outcome {
                            Err(e) => e.to_string(),
                            _ => "no role for the user".to_owned(),
                        };
                        tracing::debug!(%user, %address, %detail, "PostgreSQL login failed");
                        self.shared.throttle.failed(&user, &address, Instant::now());
                        self.shared
                            .audit(
                                &user,
                                &address,
                                "login",
                                None,
                                "failed",
                                Some("wrong user name or password (pgwire)".to_owned()),
                            )
                            .await;
                        Err(self.refusal(&user).await)
                    }
                }
            }
            _ => Ok(()),
        }
    }
}

/// The users' SCRAM verifiers, as the SCRAM exchange asks for them.
struct Verifiers {
    shared: Arc<Shared>,
}

impl Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers").finish_non_exhaustive()
    }
}

impl Verifiers {
    /// A verifier no password matches, salted the same way on every attempt,
    /// so unknown users run the same exchange as known ones.
    fn decoy(&self, user: &str) -> ScramSecret {
        let salt = Sha256::new()
            .chain_update(self.shared.decoy_key)
            .chain_update(user.as_bytes())
            .finalize();
        let mut keys = [0u8; 64];
        rand::rng().fill(&mut keys);
        ScramSecret::Verifier {
            salt: salt[..16].to_vec(),
            iterations: SCRAM_ITERATIONS as usize,
            stored_key: keys[..32].to_vec(),
            server_key: keys[32..].to_vec(),
        }
    }
}

#[async_trait]
impl AuthSource<Role> for Verifiers {
    /// Passwords are not kept: only SCRAM verifiers are.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn get_scram_secret(
        &self,
        login: &LoginInfo,
    ) -> PgWireResult<(ScramSecret, Option<Role>)> {
        let user = login.user().unwrap_or_default().to_owned();
        let name = user.clone();
        let found = self
            .shared
            .blocking(move |shared| super::lock(&shared.users).scram_verifier(&name))
            .await;
        match found {
            Some(Ok(Some((account, Some(verifier))))) => Ok((
                ScramSecret::Verifier {
                    salt: verifier.salt,
                    iterations: verifier.iterations as usize,
                    stored_key: verifier.stored_key.to_vec(),
                    server_key: verifier.server_key.to_vec(),
                },
                Some(account.role),
            )),
            Some(Ok(_)) => Ok((self.decoy(&user), None)),
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot read the users for a PostgreSQL login");
                Err(fatal("58000", "cannot read the users".to_owned()))
            }
            None => Err(fatal("58000", "cannot read the users".to_owned())),
        }
    }
}
