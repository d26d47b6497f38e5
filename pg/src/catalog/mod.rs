//! What PostgreSQL client introspection needs beyond datafusion-pg-catalog: SQL rewrites
//! DataFusion can then plan, the functions those queries call, and the relation catalog
//! tables (`pg_namespace`, `pg_class`, `pg_attribute`, `pg_index`, `pg_constraint`) computed
//! from Eddy's catalog with OIDs that stay the same across restarts.
//!
//! Queries this serves: pgjdbc `getPrimaryKeys` / `getTypeInfo`, SQLAlchemy's inspector
//! (`get_columns`, `get_pk_constraint`, `get_indexes`, `get_table_options`), psql's `\dt+`,
//! `\l+`, `\dn+`, `\df` and `\d+` (with Eddy's sizes on disk), psycopg's `TypeInfo.fetch`.

mod functions;
mod information_schema;
mod oids;
mod procs;
mod rewrite;
mod sizes;
mod tables;
mod types;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::{as_int32_array, as_string_array};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};
use datafusion::prelude::SessionContext;
use eddy_storage::Db;

use self::functions::{
    ExpandArray, description_udfs, format_udf, json_build_object_udf, pg_collation_is_visible_udf,
    pg_get_constraintdef_udf, pg_get_indexdef_udf, to_regclass_udf,
};
use self::tables::{CatalogState, PgCatalog};
use eddy_query::QueryEngine;
use eddy_query::catalog::DATABASE;
use eddy_query::continuous::ViewRegistry;

use crate::error::{PgError, Result};

pub(crate) use self::oids::key_columns;
pub use self::rewrite::rewrite;
pub(crate) use self::tables::type_name;

/// Adds to every session of `engine` what PostgreSQL clients read and call: Eddy's
/// `information_schema`, pg-catalog's `pg_catalog` with Eddy's relation tables, the
/// functions client introspection calls (`version()`, `format_type`, `pg_get_indexdef`, ...),
/// and `pg_cancel_backend`.
pub async fn install(engine: &mut QueryEngine) -> Result<()> {
    let db = engine.db().clone();
    let views = engine.views().clone();
    let running = engine.running().clone();
    engine
        .extend(|ctx| async move {
            setup(&ctx, db, views).await.map_err(|e| {
                eddy_query::QueryError::internal(format!("setting up pg_catalog: {e}"))
            })?;
            // What psql, pgAdmin and DBeaver call to stop another session's statement.
            ctx.register_udf(crate::activity::pg_cancel_backend_udf(running));
            Ok(ctx)
        })
        .await?;
    Ok(())
}

async fn setup(ctx: &SessionContext, db: Db, views: Arc<ViewRegistry>) -> Result<()> {
    let missing = |what: &str| PgError::new("XX000", format!("{what} is not set up"));
    let catalog = ctx
        .catalog(DATABASE)
        .ok_or_else(|| missing("catalog eddy"))?;
    // Eddy's information_schema replaces DataFusion's built-in one (which the session
    // would serve ahead of any registered schema), to report PostgreSQL type names.
    let _ = catalog.register_schema(
        "information_schema",
        Arc::new(information_schema::PgInformationSchema::new(
            ctx.state().catalog_list().clone(),
            db.clone(),
        )),
    );
    // pg_catalog and the functions clients call on connect (format_type,
    // pg_table_is_visible, has_*_privilege, quote_ident, ...), shared by every session.
    datafusion_pg_catalog::setup_pg_catalog(
        ctx,
        DATABASE,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| PgError::from(*e))?;
    ctx.register_udf(functions::version_udf());
    ctx.register_udf(functions::pg_get_serial_sequence_udf());
    relations(ctx, db, views).await
}

/// Replaces pg-catalog's relation tables with ones computed from Eddy's catalog and
/// registers the functions client introspection calls; run after `setup_pg_catalog`.
async fn relations(ctx: &SessionContext, db: Db, views: Arc<ViewRegistry>) -> Result<()> {
    let missing = |what: &str| PgError::new("XX000", format!("{what} is not set up"));
    let catalog = ctx
        .catalog(DATABASE)
        .ok_or_else(|| missing("catalog eddy"))?;
    let inner = catalog
        .schema("pg_catalog")
        .ok_or_else(|| missing("pg_catalog"))?;
    let state = Arc::new(CatalogState {
        catalog: catalog.clone(),
        db: db.clone(),
        views,
        system: system_relation_oids(ctx).await?,
    });
    // pg-catalog's static pg_type and pg_proc, read once.
    let types = Arc::new(types::TypeCatalog::load(ctx).await?);
    let procs = Arc::new(procs::ProcCatalog::load(ctx, types.clone()).await?);
    ctx.register_udf(to_regclass_udf(state.clone()));
    // These replace pg-catalog's functions of the same names (registered before, by
    // `setup_pg_catalog`): `pg_relation_size` and `pg_total_relation_size` took only an
    // int4 and answered 0, `pg_encoding_to_char` said `UTF-8`.
    for udf in sizes::udfs(state.clone())
        .into_iter()
        .chain(types::udfs(&types))
        .chain(procs::udfs(procs))
    {
        ctx.register_udf(udf);
    }
    ctx.register_udf(functions::pg_encoding_to_char_udf());
    catalog.register_schema("pg_catalog", Arc::new(PgCatalog { inner, state }))?;
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    ctx.register_udf(json_build_object_udf());
    ctx.register_udf(pg_get_indexdef_udf(db.clone()));
    ctx.register_udf(pg_get_constraintdef_udf(db));
    ctx.register_udf(pg_collation_is_visible_udf());
    ctx.register_udf(functions::OidArray::udf());
    // Eddy has no roles: every session may do everything, as has_*_privilege answer.
    ctx.register_udf(
        datafusion_pg_catalog::pg_catalog::has_privilege_udf::create_has_privilege_udf(
            "pg_has_role",
        ),
    );
    ctx.register_udf(format_udf());
    for udf in description_udfs() {
        ctx.register_udf(udf);
    }
    Ok(())
}

/// (namespace OID, relation name) → (relation OID, row type OID) of the system relations
/// whose row types pg-catalog's static `pg_type` holds (`pg_class` is 1259, as in
/// PostgreSQL), so `pg_type.typrelid` and `pg_description.objoid` join to them.
async fn system_relation_oids(ctx: &SessionContext) -> Result<HashMap<(i32, String), (i32, i32)>> {
    let batches = ctx.table("pg_catalog.pg_type").await?.collect().await?;
    let mut oids = HashMap::new();
    for b in &batches {
        let column = |name: &str, dt: &DataType| -> DfResult<ArrayRef> {
            let c = b.column_by_name(name).ok_or_else(|| {
                DataFusionError::Plan(format!("pg_catalog.pg_type has no column {name}"))
            })?;
            Ok(cast(c, dt)?)
        };
        let (names, nsps, relids, typids) = (
            column("typname", &DataType::Utf8)?,
            column("typnamespace", &DataType::Int32)?,
            column("typrelid", &DataType::Int32)?,
            column("oid", &DataType::Int32)?,
        );
        let (names, nsps) = (as_string_array(&names)?, as_int32_array(&nsps)?);
        let (relids, typids) = (as_int32_array(&relids)?, as_int32_array(&typids)?);
        for i in 0..b.num_rows() {
            if [
                names.is_null(i),
                nsps.is_null(i),
                relids.is_null(i),
                typids.is_null(i),
            ]
            .contains(&true)
                || relids.value(i) == 0
            {
                continue;
            }
            oids.insert(
                (nsps.value(i), names.value(i).to_string()),
                (relids.value(i), typids.value(i)),
            );
        }
    }
    Ok(oids)
}
