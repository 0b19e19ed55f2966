//! The table catalog, persisted as `catalog.json` in the data directory.
//!
//! Architecture invariant: a table is durable in the catalog file before it
//! becomes visible, so every WAL record (which names tables by id) refers to
//! a table that recovery will find.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Corruption, Error, Result};
use crate::fsutil;
use crate::schema::{Table, TableId, TableSchema};

pub(crate) const CATALOG_FILE: &str = "catalog.json";
const CATALOG_FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    format_version: u32,
    tables: Vec<CatalogEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    id: TableId,
    schema: TableSchema,
}

/// An immutable view of all tables.
#[derive(Default)]
pub(crate) struct CatalogSnapshot {
    by_name: HashMap<String, Arc<Table>>,
    by_id: HashMap<TableId, Arc<Table>>,
}

impl CatalogSnapshot {
    pub(crate) fn by_name(&self, name: &str) -> Option<&Arc<Table>> {
        self.by_name.get(name)
    }

    pub(crate) fn by_id(&self, id: TableId) -> Option<&Arc<Table>> {
        self.by_id.get(&id)
    }

    pub(crate) fn tables(&self) -> Vec<Arc<Table>> {
        let mut tables: Vec<_> = self.by_id.values().cloned().collect();
        tables.sort_by_key(|t| t.id());
        tables
    }

    pub(crate) fn with_table(&self, table: Arc<Table>) -> CatalogSnapshot {
        let mut next = CatalogSnapshot {
            by_name: self.by_name.clone(),
            by_id: self.by_id.clone(),
        };
        next.by_name.insert(table.name().to_owned(), table.clone());
        next.by_id.insert(table.id(), table);
        next
    }
}

/// Whether `create_table` made a new table.
#[derive(Debug, Clone)]
pub enum CreateTable {
    Created(Arc<Table>),
    /// A table with an identical schema already existed.
    Exists(Arc<Table>),
}

pub(crate) struct Catalog {
    path: PathBuf,
    snapshot: RwLock<Arc<CatalogSnapshot>>,
    /// Serialises creations so the file is never written concurrently.
    create: Mutex<()>,
}

impl Catalog {
    pub(crate) fn open(data_dir: &Path) -> Result<Catalog> {
        let path = data_dir.join(CATALOG_FILE);
        let mut snapshot = CatalogSnapshot::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bad = |what: String| Error::Corruption {
                    file: path.clone(),
                    offset: 0,
                    problem: Corruption::BadCatalog(what),
                };
                let file: CatalogFile =
                    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                if file.format_version != CATALOG_FORMAT_VERSION {
                    return Err(Error::Corruption {
                        file: path.clone(),
                        offset: 0,
                        problem: Corruption::UnsupportedVersion {
                            found: file.format_version,
                            supported: CATALOG_FORMAT_VERSION,
                        },
                    });
                }
                for entry in file.tables {
                    let table = entry
                        .schema
                        .validate(entry.id)
                        .map_err(|e| bad(e.to_string()))?;
                    if snapshot.by_id.contains_key(&table.id())
                        || snapshot.by_name.contains_key(table.name())
                    {
                        return Err(bad(format!(
                            "table {:?} (id {}) appears twice",
                            table.name(),
                            table.id()
                        )));
                    }
                    snapshot = snapshot.with_table(Arc::new(table));
                }
            }
            // `datadir::check_metadata` creates the file for a new
            // directory and refuses a damaged one before this runs.
            Err(e) => return Err(Error::Io { path, source: e }),
        }
        Ok(Catalog {
            path,
            snapshot: RwLock::new(Arc::new(snapshot)),
            create: Mutex::new(()),
        })
    }

    /// Writes the empty catalog of a new data directory.
    pub(crate) fn initialise(data_dir: &Path) -> Result<()> {
        write_file(&data_dir.join(CATALOG_FILE), &CatalogSnapshot::default())
    }

    pub(crate) fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.snapshot.read().expect("catalog lock poisoned").clone()
    }

    pub(crate) fn create(&self, schema: TableSchema) -> Result<CreateTable> {
        let _guard = self.create.lock().expect("catalog lock poisoned");
        let current = self.snapshot();
        if let Some(existing) = current.by_name(&schema.name) {
            return if *existing.schema() == schema {
                Ok(CreateTable::Exists(existing.clone()))
            } else {
                Err(Error::SchemaConflict { table: schema.name })
            };
        }
        let id = current.by_id.keys().max().map_or(1, |max| max + 1);
        let table = Arc::new(schema.validate(id)?);
        let next = current.with_table(table.clone());
        write_file(&self.path, &next)?;
        *self.snapshot.write().expect("catalog lock poisoned") = Arc::new(next);
        Ok(CreateTable::Created(table))
    }
}

fn write_file(path: &Path, snapshot: &CatalogSnapshot) -> Result<()> {
    let file = CatalogFile {
        format_version: CATALOG_FORMAT_VERSION,
        tables: snapshot
            .tables()
            .into_iter()
            .map(|t| CatalogEntry {
                id: t.id(),
                schema: t.schema().clone(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("catalog serialises");
    fsutil::write_atomically(path, &bytes)
}
