//! The SQL DBeaver (Community) sends to build its navigator over a PostgreSQL connection,
//! verbatim as its PostgreSQL plugin builds it for a PostgreSQL 12+ server (dbeaver/dbeaver
//! plugins/org.jkiss.dbeaver.ext.postgresql, model/: PostgreDataSource.java,
//! PostgreExecutionContext.java, PostgreDatabase.java, PostgreSchema.java, PostgreUtils.java,
//! PostgreDataTypeCache.java, impls/PostgreServerPostgreSQL.java; 24.x to 26.x), with the
//! default connection settings (only the connected database, no template databases): the two
//! contexts' set-up, database and setting lookups, the probes and data types of
//! `initialize`, then Databases > eddy > Schemas > public > Tables / Materialized Views >
//! cpu > Columns, Constraints, Indexes; plus what pgjdbc sends for it (`setClientInfo`,
//! `getSQLKeywords`). DBeaver itself is not run. Parameters are bound as pgjdbc binds them
//! (`setString` is `varchar`, `setLong` is `int8`) over the extended protocol, and every answer
//! is checked as DBeaver reads it (by column name, `c.*` included): a schema, table or key it
//! cannot read is missing from its tree, a type it cannot resolve shows as `varchar`.

use std::collections::HashMap;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use crate::common::{Server, data_dir};

/// `PostgreDataSource.openConnection` → pgjdbc `setClientInfo("ApplicationName", ...)`, for
/// the main context and the metadata context (DBeaver opens one connection for each).
const APPLICATION_NAME_MAIN: &str = "SET application_name = 'DBeaver 25.1.5 - Main <eddy>'";
const APPLICATION_NAME_METADATA: &str = "SET application_name = 'DBeaver 25.1.5 - Metadata <eddy>'";

/// `PostgreExecutionContext.refreshDefaults`: the search path, split on `,` and unquoted.
const SEARCH_PATH: &str = "SHOW search_path";

/// `PostgreExecutionContext.refreshDefaults`: the active schema and user (columns 1 and 2).
const SCHEMA_AND_USER: &str = "SELECT current_schema(),session_user";

/// `PostgreDatabase.SchemaCache.prepareLookupStatement`, no schema filter.
const SCHEMAS: &str = concat!(
    "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n\n",
    "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 ",
    "AND d.classoid='pg_namespace'::regclass\n",
    " ORDER BY nspname"
);

/// `PostgreDatabase.readDatabaseInfo`: $1 = 'eddy' (varchar).
const DATABASE: &str = "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=$1";

/// `PostgreDataSource.SettingCache.prepareLookupStatement` ("Preload some settings"):
/// $1 = 'standard_conforming_strings' (varchar).
const SETTING: &str = "select * from pg_catalog.pg_settings where name=$1";

/// pgjdbc `PgDatabaseMetaData.getSQLKeywords`, which DBeaver's `JDBCSQLDialect` calls from
/// `JDBCDataSource.initialize`: PostgreSQL's keywords less SQL:2003's.
const KEYWORDS: &str = concat!(
    "select string_agg(word, ',') from pg_catalog.pg_get_keywords() ",
    "where word <> ALL ('{a,abs,absolute,action,ada,add,admin,after,all,allocate,alter,",
    "always,and,any,are,array,as,asc,asensitive,assertion,assignment,asymmetric,at,atomic,",
    "attribute,attributes,authorization,avg,before,begin,bernoulli,between,bigint,binary,",
    "blob,boolean,both,breadth,by,c,call,called,cardinality,cascade,cascaded,case,cast,",
    "catalog,catalog_name,ceil,ceiling,chain,char,char_length,character,character_length,",
    "character_set_catalog,character_set_name,character_set_schema,characteristics,",
    "characters,check,checked,class_origin,clob,close,coalesce,cobol,code_units,collate,",
    "collation,collation_catalog,collation_name,collation_schema,collect,column,",
    "column_name,command_function,command_function_code,commit,committed,condition,",
    "condition_number,connect,connection_name,constraint,constraint_catalog,constraint_name,",
    "constraint_schema,constraints,constructors,contains,continue,convert,corr,",
    "corresponding,count,covar_pop,covar_samp,create,cross,cube,cume_dist,current,",
    "current_collation,current_date,current_default_transform_group,current_path,",
    "current_role,current_time,current_timestamp,current_transform_group_for_type,current_user,",
    "cursor,cursor_name,cycle,data,date,datetime_interval_code,datetime_interval_precision,",
    "day,deallocate,dec,decimal,declare,default,defaults,deferrable,deferred,defined,definer,",
    "degree,delete,dense_rank,depth,deref,derived,desc,describe,descriptor,deterministic,",
    "diagnostics,disconnect,dispatch,distinct,domain,double,drop,dynamic,dynamic_function,",
    "dynamic_function_code,each,element,else,end,end-exec,equals,escape,every,except,",
    "exception,exclude,excluding,exec,execute,exists,exp,external,extract,false,fetch,filter,",
    "final,first,float,floor,following,for,foreign,fortran,found,free,from,full,function,",
    "fusion,g,general,get,global,go,goto,grant,granted,group,grouping,having,hierarchy,hold,",
    "hour,identity,immediate,implementation,in,including,increment,indicator,initially,",
    "inner,inout,input,insensitive,insert,instance,instantiable,int,integer,intersect,",
    "intersection,interval,into,invoker,is,isolation,join,k,key,key_member,key_type,language,",
    "large,last,lateral,leading,left,length,level,like,ln,local,localtime,localtimestamp,",
    "locator,lower,m,map,match,matched,max,maxvalue,member,merge,message_length,",
    "message_octet_length,message_text,method,min,minute,minvalue,mod,modifies,module,month,",
    "more,multiset,mumps,name,names,national,natural,nchar,nclob,nesting,new,next,no,none,",
    "normalize,normalized,not,\"null\",nullable,nullif,nulls,number,numeric,object,",
    "octet_length,octets,of,old,on,only,open,option,options,or,order,ordering,ordinality,",
    "others,out,outer,output,over,overlaps,overlay,overriding,pad,parameter,parameter_mode,",
    "parameter_name,parameter_ordinal_position,parameter_specific_catalog,",
    "parameter_specific_name,parameter_specific_schema,partial,partition,pascal,path,",
    "percent_rank,percentile_cont,percentile_disc,placing,pli,position,power,preceding,",
    "precision,prepare,preserve,primary,prior,privileges,procedure,public,range,rank,read,",
    "reads,real,recursive,ref,references,referencing,regr_avgx,regr_avgy,regr_count,",
    "regr_intercept,regr_r2,regr_slope,regr_sxx,regr_sxy,regr_syy,relative,release,",
    "repeatable,restart,result,return,returned_cardinality,returned_length,",
    "returned_octet_length,returned_sqlstate,returns,revoke,right,role,rollback,rollup,",
    "routine,routine_catalog,routine_name,routine_schema,row,row_count,row_number,rows,",
    "savepoint,scale,schema,schema_name,scope_catalog,scope_name,scope_schema,scroll,",
    "search,second,section,security,select,self,sensitive,sequence,serializable,server_name,",
    "session,session_user,set,sets,similar,simple,size,smallint,some,source,space,specific,",
    "specific_name,specifictype,sql,sqlexception,sqlstate,sqlwarning,sqrt,start,state,",
    "statement,static,stddev_pop,stddev_samp,structure,style,subclass_origin,submultiset,",
    "substring,sum,symmetric,system,system_user,table,table_name,tablesample,temporary,then,",
    "ties,time,timestamp,timezone_hour,timezone_minute,to,top_level_count,trailing,",
    "transaction,transaction_active,transactions_committed,transactions_rolled_back,",
    "transform,transforms,translate,translation,treat,trigger,trigger_catalog,trigger_name,",
    "trigger_schema,trim,true,type,uescape,unbounded,uncommitted,under,union,unique,unknown,",
    "unnamed,unnest,update,upper,usage,user,user_defined_type_catalog,user_defined_type_code,",
    "user_defined_type_name,user_defined_type_schema,using,value,values,var_pop,var_samp,",
    "varchar,varying,view,when,whenever,where,width_bucket,window,with,within,without,work,",
    "write,year,zone}'::text[])"
);

/// `PostgreDataSource.initialize`: the server version string.
const VERSION: &str = "SELECT version()";

/// `PostgreDataSource.initialize` → `PostgreUtils.isMetaObjectExists(session, "pg_enum", "*")`
/// (`getQueryForSystemColumnChecking`): enum values are read only if this succeeds.
const ENUM_PROBE: &str = "SELECT * FROM pg_catalog.pg_enum WHERE 1<>1 LIMIT 1";

/// `PostgreDataSource.initialize` → `isMetaObjectExists(session, "pg_class", "reltype")`.
const RELTYPE_PROBE: &str = "SELECT reltype FROM pg_catalog.pg_class WHERE 1<>1 LIMIT 1";

/// `PostgreDatabase.cacheDataTypes` with `PostgreDataTypeCache.getBaseTypeNameClause`: base
/// types, not table row types (server 10+: no `typcategory` probe; "read all types" off).
const DATA_TYPES: &str = concat!(
    "SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) ",
    "as base_type_name, d.description\n",
    "FROM pg_catalog.pg_type t\n",
    "LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem \n",
    "LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid\n",
    "LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid\n",
    "WHERE t.typname IS NOT NULL\n",
    "AND (c.relkind IS NULL OR c.relkind = 'c') ",
    "AND (et.typcategory IS NULL OR et.typcategory <> 'C')"
);

/// `PostgreDatabase.EnumValueCache` (from `initEnumTypesCache`, after the probe succeeded).
const ENUM_VALUES: &str = "SELECT * FROM pg_catalog.pg_enum";

/// `PostgreSchema.TableCache.prepareLookupStatement` (Tables, Views and Materialized Views
/// share it): $1 = the schema's oid (int8).
const TABLES: &str = concat!(
    "SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) ",
    "as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key \n",
    "FROM pg_catalog.pg_class c\n",
    "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 ",
    "AND d.classoid='pg_class'::regclass\n",
    "WHERE c.relnamespace=$1 AND c.relkind not in ('i','I','c')"
);

/// `PostgreSchema.collectObjectStatistics` (the sizes the navigator shows): $1 = the schema's
/// oid (int8).
const STATISTICS: &str = concat!(
    "select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,",
    "pg_catalog.pg_relation_size(c.oid) as rel_size\n",
    "FROM pg_class c\n",
    "WHERE c.relnamespace=$1"
);

/// `PostgreSchema.TableCache.prepareChildrenStatement` for one table (`supportsSequences`
/// adds `dep.objid`): $1 = the table's oid (int8).
const COLUMNS: &str = concat!(
    "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,",
    "dsc.description,dep.objid\n",
    "FROM pg_catalog.pg_attribute a\n",
    "INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)\n",
    "LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)\n",
    "LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid ",
    "AND a.attnum = dsc.objsubid)\n",
    "LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' ",
    "and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid\n",
    "WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=$1\n",
    "ORDER BY a.attnum"
);

/// `PostgreSchema.ConstraintCache.prepareObjectsStatement` for one table; `null as
/// consrc_copy` because `PostgreServerPostgreSQL.supportsPGConstraintExpressionColumn` is
/// false from PostgreSQL 12: $1 = the table's oid (int8).
const CONSTRAINTS: &str = concat!(
    "SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description",
    ", null as consrc_copy\n",
    "FROM pg_catalog.pg_constraint c\n",
    "INNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid\n",
    "LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid\n",
    "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 ",
    "AND d.classoid='pg_constraint'::regclass\n",
    "WHERE c.conrelid=$1\n",
    "ORDER BY c.oid"
);

/// `PostgreSchema.IndexCache.prepareObjectsStatement` for one table (expression indexes and
/// relation sizes supported; the 2025+ form, ordered by table then index): $1 = the table's
/// oid (int8).
const INDEXES: &str = concat!(
    "SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,c.reltablespace,",
    "tc.relname as tabrelname,dsc.description",
    ",pg_catalog.pg_get_expr(i.indpred, i.indrelid) as pred_expr",
    ",pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr",
    ",pg_catalog.pg_relation_size(i.indexrelid) as index_rel_size",
    ",pg_catalog.pg_stat_get_numscans(i.indexrelid) as index_num_scans",
    " FROM pg_catalog.pg_index i\n",
    "INNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid\n",
    "INNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid\n",
    "LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid\n",
    "WHERE  i.indrelid=$1 ORDER BY tabrelname, c.relname"
);

/// `PostgreDatabase.AccessMethodCache`, which `IndexCache.fetchObjectRow` loads through
/// `PostgreIndex.getAccessMethod` (looked up by the index's `relam`).
const ACCESS_METHODS: &str = "SELECT am.oid,am.* FROM pg_catalog.pg_am am \nORDER BY am.oid";

/// Runs `sql` as pgjdbc does: prepared with the parameter types it declares.
async fn jdbc(c: &Client, sql: &str, types: &[Type], params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
    let st = c
        .prepare_typed(sql, types)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e:?}"));
    c.query(&st, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e:?}"))
}

/// A column as `JDBCUtils.safeGetLong` reads it: an oid or an integer of any width, 0 for
/// NULL. A missing column panics: DBeaver would read 0, which these tests never expect.
fn long(r: &Row, col: &str) -> i64 {
    if let Ok(v) = r.try_get::<_, Option<u32>>(col) {
        return v.map_or(0, i64::from);
    }
    if let Ok(v) = r.try_get::<_, Option<i32>>(col) {
        return v.map_or(0, i64::from);
    }
    if let Ok(v) = r.try_get::<_, Option<i16>>(col) {
        return v.map_or(0, i64::from);
    }
    r.get::<_, Option<i64>>(col).unwrap_or(0)
}

/// An `int2[]` / `int2vector` column (`conkey`, `indkey`) as `PostgreUtils` reads it.
fn numbers(r: &Row, col: &str) -> Vec<i64> {
    if let Ok(v) = r.try_get::<_, Vec<i16>>(col) {
        return v.into_iter().map(i64::from).collect();
    }
    if let Ok(v) = r.try_get::<_, Vec<i32>>(col) {
        return v.into_iter().map(i64::from).collect();
    }
    r.get::<_, Vec<i64>>(col)
}

/// Whether a text column is NULL or empty, which DBeaver treats alike (`CommonUtils.isEmpty`):
/// no default value, no index expression or predicate.
fn blank(v: Option<String>) -> bool {
    v.is_none_or(|v| v.is_empty())
}

/// Whether the result has a column `name` (DBeaver reads it with `safeGet*`).
fn has_column(r: &Row, name: &str) -> bool {
    r.columns().iter().any(|c| c.name() == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbeaver_navigator_sees_schemas_tables_columns_keys_and_indexes() {
    let dir = data_dir();
    let srv = Server::start(dir.path());
    srv.create_cpu_and_rollup();

    // DBeaver opens a main and a metadata connection; each names itself, then reads its search
    // path, active schema and user. The first to find the active schema loads all schemas.
    let main = srv.pg().await;
    let meta = srv.pg().await;
    let mut schemas: Vec<(i64, String)> = Vec::new();
    for (c, application_name) in [
        (&main, APPLICATION_NAME_MAIN),
        (&meta, APPLICATION_NAME_METADATA),
    ] {
        c.execute(application_name, &[])
            .await
            .unwrap_or_else(|e| panic!("{application_name}\n{e:?}"));
        let path: String = jdbc(c, SEARCH_PATH, &[], &[]).await[0].get(0);
        let path: Vec<&str> = path
            .split(',')
            .map(|p| p.trim().trim_matches('"'))
            .collect();
        assert_eq!(path, ["$user", "public"]);
        let defaults = jdbc(c, SCHEMA_AND_USER, &[], &[]).await;
        assert_eq!(defaults.len(), 1);
        assert_eq!(
            defaults[0].get::<_, Option<String>>(0).as_deref(),
            Some("public")
        );
        let user: Option<String> = defaults[0].get(1);
        assert!(user.is_some_and(|u| !u.is_empty()), "no session_user");
        if schemas.is_empty() {
            schemas = jdbc(c, SCHEMAS, &[], &[])
                .await
                .iter()
                .map(|r| (long(r, "oid"), r.get::<_, String>("nspname")))
                .collect();
        }
    }
    // The Schemas folder, ordered by name; public is the active schema, pg_catalog holds the
    // data types.
    let names: Vec<&str> = schemas.iter().map(|s| s.1.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "schemas not ordered by nspname");
    let schema_oid = |name: &str| {
        schemas
            .iter()
            .find(|s| s.1 == name)
            .map(|s| s.0)
            .unwrap_or_else(|| panic!("schema {name} not in {schemas:?}"))
    };
    let public = schema_oid("public");
    let pg_catalog = schema_oid("pg_catalog");
    assert!(public > 0 && pg_catalog > 0 && public != pg_catalog);

    // The database node: the connected database, a normal one.
    let db = jdbc(&meta, DATABASE, &[Type::VARCHAR], &[&"eddy"]).await;
    assert_eq!(db.len(), 1, "database eddy not found");
    assert_eq!(db[0].get::<_, String>("datname"), "eddy");
    assert!(long(&db[0], "oid") > 0);
    assert!(db[0].get::<_, bool>("datallowconn"));
    assert!(!db[0].get::<_, bool>("datistemplate"));

    // standard_conforming_strings decides how DBeaver escapes string literals.
    let setting = jdbc(
        &meta,
        SETTING,
        &[Type::VARCHAR],
        &[&"standard_conforming_strings"],
    )
    .await;
    assert_eq!(setting.len(), 1);
    assert_eq!(
        setting[0].get::<_, Option<String>>("setting").as_deref(),
        Some("on")
    );

    // pgjdbc fails getSQLKeywords without a row; SQL:2003 words are left out.
    let keywords = jdbc(&meta, KEYWORDS, &[], &[]).await;
    assert_eq!(keywords.len(), 1);
    let keywords: Option<String> = keywords[0].get(0);
    let keywords = keywords.expect("no keywords");
    let words: Vec<&str> = keywords.split(',').collect();
    assert!(words.contains(&"limit"), "{keywords}");
    assert!(!words.contains(&"select"), "{keywords}");

    let version: String = jdbc(&meta, VERSION, &[], &[]).await[0].get(0);
    assert!(version.starts_with("PostgreSQL "), "{version}");

    // The probes must not fail; they answer no rows, with the columns asked for.
    assert!(jdbc(&meta, ENUM_PROBE, &[], &[]).await.is_empty());
    let probe = meta.prepare(ENUM_PROBE).await.unwrap();
    let columns: Vec<&str> = probe.columns().iter().map(|c| c.name()).collect();
    assert!(
        columns.contains(&"enumtypid") && columns.contains(&"enumlabel"),
        "{columns:?}"
    );
    assert!(jdbc(&meta, RELTYPE_PROBE, &[], &[]).await.is_empty());
    let probe = meta.prepare(RELTYPE_PROBE).await.unwrap();
    let columns: Vec<&str> = probe.columns().iter().map(|c| c.name()).collect();
    assert_eq!(columns, ["reltype"]);

    // Data types, by oid, as DBeaver resolves column types: base types in pg_catalog, no
    // table row types.
    let types: HashMap<i64, (String, i64)> = jdbc(&meta, DATA_TYPES, &[], &[])
        .await
        .iter()
        .map(|r| {
            let relkind: Option<String> = r.get("relkind");
            assert!(
                relkind.as_deref().is_none_or(|k| k == "c"),
                "row type {relkind:?} loaded"
            );
            (
                long(r, "oid"),
                (r.get::<_, String>("typname"), long(r, "typnamespace")),
            )
        })
        .collect();
    for (oid, name) in [
        (16_i64, "bool"),
        (20, "int8"),
        (23, "int4"),
        (25, "text"),
        (701, "float8"),
        (1114, "timestamp"),
    ] {
        assert_eq!(
            types.get(&oid),
            Some(&(name.to_string(), pg_catalog)),
            "type {oid}"
        );
    }
    for r in jdbc(&meta, ENUM_VALUES, &[], &[]).await {
        let enum_type = long(&r, "enumtypid");
        assert!(
            types.contains_key(&enum_type),
            "enum of unknown type {enum_type}"
        );
    }

    // public's Tables, Views and Materialized Views folders, from one listing: cpu is a
    // table (not a partition), cpu_1m a materialized view; no indexes or composite types.
    let relations: HashMap<String, (i64, String)> = jdbc(&meta, TABLES, &[Type::INT8], &[&public])
        .await
        .iter()
        .map(|r| {
            assert_eq!(long(r, "relnamespace"), public);
            assert!(has_column(r, "partition_expr") && has_column(r, "partition_key"));
            let kind: String = r.get("relkind");
            assert!(!["i", "I", "c"].contains(&kind.as_str()), "{kind}");
            if kind == "r" {
                assert!(!r.get::<_, bool>("relispartition"));
            }
            (r.get("relname"), (long(r, "oid"), kind))
        })
        .collect();
    let relation = |name: &str, kind: &str| {
        let (oid, k) = relations
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in {relations:?}"));
        assert_eq!(k, kind, "{name}");
        assert!(*oid > 0, "{name} has no oid");
        *oid
    };
    // As PostgreSQL describes them: both `c.oid` and the `oid` of `c.*` are named oid, and
    // oid columns are of type oid (not regnamespace, which readers of oids cannot decode).
    let described = meta.prepare_typed(TABLES, &[Type::INT8]).await.unwrap();
    let columns = described.columns();
    assert_eq!((columns[0].name(), columns[1].name()), ("oid", "oid"));
    for c in columns
        .iter()
        .filter(|c| ["oid", "relnamespace", "reltype"].contains(&c.name()))
    {
        assert_eq!(c.type_(), &Type::OID, "{}", c.name());
    }
    let cpu = relation("cpu", "r");
    assert!(
        !relations.contains_key("eddy_views"),
        "the system table is listed"
    );
    let cpu_1m = relation("cpu_1m", "m");
    assert_ne!(cpu, cpu_1m);

    // Sizes: a row for each relation, by oid.
    let sizes: HashMap<i64, (i64, i64)> = jdbc(&meta, STATISTICS, &[Type::INT8], &[&public])
        .await
        .iter()
        .map(|r| {
            (
                long(r, "oid"),
                (long(r, "total_rel_size"), long(r, "rel_size")),
            )
        })
        .collect();
    for oid in [cpu, cpu_1m] {
        let (total, size) = sizes.get(&oid).copied().expect("no size row");
        assert!(total >= 0 && size >= 0);
    }

    // cpu > Columns: in attnum order, with types DBeaver finds among the data types.
    let columns = |rows: &[Row], table: &str| -> Vec<(String, i64, String)> {
        rows.iter()
            .map(|r| {
                assert_eq!(r.get::<_, String>("relname"), table);
                assert!(!r.get::<_, bool>("attisdropped"));
                assert!(blank(r.get("def_value")), "{table} has a default");
                let type_oid = long(r, "atttypid");
                let (type_name, _) = types
                    .get(&type_oid)
                    .unwrap_or_else(|| panic!("type {type_oid} of {table} not loaded"));
                (
                    r.get::<_, String>("attname"),
                    long(r, "attnum"),
                    type_name.clone(),
                )
            })
            .collect()
    };
    let want = |name: &str, attnum: i64, ty: &str| (name.to_string(), attnum, ty.to_string());
    let cpu_columns = jdbc(&meta, COLUMNS, &[Type::INT8], &[&cpu]).await;
    assert_eq!(
        columns(&cpu_columns, "cpu"),
        [
            want("time", 1, "timestamp"),
            want("hostname", 2, "text"),
            want("usage_user", 3, "float8"),
        ]
    );
    let not_null: HashMap<String, bool> = cpu_columns
        .iter()
        .map(|r| (r.get("attname"), r.get("attnotnull")))
        .collect();
    assert!(not_null["time"], "time is NOT NULL");
    assert!(!not_null["usage_user"], "usage_user is nullable");
    let attname: HashMap<i64, String> = cpu_columns
        .iter()
        .map(|r| (long(r, "attnum"), r.get("attname")))
        .collect();
    let column_names = |attnums: Vec<i64>| -> Vec<String> {
        attnums
            .iter()
            .map(|n| {
                attname
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| panic!("no column {n}"))
            })
            .collect()
    };

    // cpu_1m > Columns (Materialized Views folder).
    let view_columns = jdbc(&meta, COLUMNS, &[Type::INT8], &[&cpu_1m]).await;
    assert_eq!(
        columns(&view_columns, "cpu_1m"),
        [
            want("bucket", 1, "timestamp"),
            want("hostname", 2, "text"),
            want("usage", 3, "float8"),
        ]
    );

    // cpu > Constraints: the primary key, on its tags then time, filed under cpu.
    let constraints = jdbc(&meta, CONSTRAINTS, &[Type::INT8], &[&cpu]).await;
    assert_eq!(constraints.len(), 1, "constraints of cpu");
    let key = &constraints[0];
    assert_eq!(key.get::<_, String>("tabrelname"), "cpu");
    assert_eq!(key.get::<_, String>("contype"), "p");
    let key_name: String = key.get("conname");
    assert_eq!(key_name, "cpu_pkey");
    assert!(long(key, "oid") > 0);
    assert_eq!(column_names(numbers(key, "conkey")), ["hostname", "time"]);
    assert_eq!(key.get::<_, Option<String>>("consrc_copy"), None);

    // cpu > Indexes: the key's unique btree index (same name, so DBeaver ties it to the
    // constraint), ascending on the key columns.
    let indexes = jdbc(&meta, INDEXES, &[Type::INT8], &[&cpu]).await;
    assert_eq!(indexes.len(), 1, "indexes of cpu");
    let index = &indexes[0];
    assert_eq!(index.get::<_, String>("tabrelname"), "cpu");
    assert_eq!(index.get::<_, String>("relname"), key_name);
    assert_eq!(long(index, "indrelid"), cpu);
    assert_eq!(long(index, "relnamespace"), public);
    assert!(long(index, "indexrelid") > 0);
    assert!(index.get::<_, bool>("indisunique"));
    assert!(index.get::<_, bool>("indisprimary"));
    assert!(index.get::<_, bool>("indisvalid"));
    assert!(blank(index.get("expr")) && blank(index.get("pred_expr")));
    assert!(has_column(index, "index_rel_size") && has_column(index, "index_num_scans"));
    assert_eq!(column_names(numbers(index, "keys")), ["hostname", "time"]);
    assert!(numbers(index, "indoption").iter().all(|o| o & 1 == 0));

    // The index's access method, by relam.
    let methods: HashMap<i64, String> = jdbc(&meta, ACCESS_METHODS, &[], &[])
        .await
        .iter()
        .map(|r| (long(r, "oid"), r.get("amname")))
        .collect();
    let relam = long(index, "relam");
    assert_eq!(
        methods.get(&relam).map(String::as_str),
        Some("btree"),
        "access method {relam} in {methods:?}"
    );
}
