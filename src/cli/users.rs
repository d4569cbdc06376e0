//! `trainyard users add|list|revoke|rotate`: the accounts of a shared box.

use crate::queue;
use crate::queue::users::{self, Role};
use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct UsersArgs {
    /// The job database, as for `trainyard serve`.
    #[arg(long, env = "TRAINYARD_DATABASE", default_value = "sqlite://var/trainyard.db")]
    database: String,
    /// The admin's token file, as for `trainyard serve`: rewritten when the token it holds
    /// is rotated.
    #[arg(long, env = "TRAINYARD_ADMIN_TOKEN_FILE", default_value = "var/admin.token")]
    admin_token_file: std::path::PathBuf,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// Create a user; prints their new token alone on stdout (it is shown only this once).
    Add {
        /// 1 to 64 characters of a-z, 0-9, '.', '_' and '-'.
        name: String,
        /// What they may do: a student (the default) sees and manages their own jobs; an
        /// instructor also reads everyone's (the class view) but changes only their own; an
        /// admin manages every job, the users and their tokens.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Role::NAMES).map(|s| Role::parse(&s).expect("a listed role")), conflicts_with = "admin")]
        role: Option<Role>,
        /// The same as `--role admin`.
        #[arg(long)]
        admin: bool,
    },
    /// List the users.
    List,
    /// Revoke a user's token at once (their jobs stay).
    Revoke { name: String },
    /// Give a user a new token (a lost one, or the admin's own): the old token stops working
    /// at once, a revoked user is restored; prints the new token alone on stdout.
    Rotate { name: String },
}

pub fn users(args: UsersArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let pool = queue::open_existing(&args.database).await?;
        eprintln!("using the database {}", queue::display_url(&args.database));
        match args.command {
            UsersCommand::Add { name, role, admin } => {
                let role = role.unwrap_or(if admin { Role::Admin } else { Role::Student });
                let (user, token) = users::add_user(&pool, &name, role, queue::now_ms()).await?;
                eprintln!("created {} ({role}); the token below is shown only once", user.name);
                println!("{token}");
            }
            UsersCommand::List => {
                println!("{:<24} {:<10} {:<25} revoked", "name", "role", "created");
                for u in users::list_users(&pool).await? {
                    let when = |ms: i64| {
                        chrono::DateTime::from_timestamp_millis(ms)
                            .map_or(String::new(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    };
                    println!(
                        "{:<24} {:<10} {:<25} {}",
                        u.name,
                        u.role.as_str(),
                        when(u.created_at),
                        u.revoked_at.map_or("-".into(), when)
                    );
                }
            }
            UsersCommand::Revoke { name } => {
                users::revoke_user(&pool, &name, queue::now_ms()).await?;
                eprintln!("revoked {name}'s token");
            }
            UsersCommand::Rotate { name } => {
                let (token, old) = users::rotate_token(&pool, &name).await?;
                eprintln!("{name} has a new token (the old one no longer works); it is shown only once");
                let file = &args.admin_token_file;
                if crate::token_file::replace_if_held(file, &old, &token)
                    .with_context(|| format!("rewriting {}", file.display()))?
                {
                    eprintln!("{} holds the new token too", file.display());
                }
                println!("{token}");
            }
        }
        pool.close().await;
        anyhow::Ok(())
    })
}
