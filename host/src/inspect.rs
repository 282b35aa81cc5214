//! `weir plugin inspect`: what a component imports and exports, and whether it fits the contract.

use std::fmt::Write;
use std::path::Path;

use wasmtime::component::types::ComponentItem;

use crate::plugin::bindings::CONTRACT;
use crate::sandbox::Sandbox;

/// A report on one component, and whether it can be loaded as a Weir plugin.
pub struct Inspection {
    pub report: String,
    pub fits: bool,
}

pub fn inspect(sandbox: &Sandbox, path: &Path) -> anyhow::Result<Inspection> {
    let component = sandbox.compile(path)?;
    let engine = sandbox.engine();
    let ty = component.component_type();
    let mut report = String::new();
    writeln!(report, "{}", path.display())?;
    writeln!(report, "imports:")?;
    for (name, item) in ty.imports(engine) {
        writeln!(report, "  {name}{}", functions(engine, &item.ty))?;
    }
    writeln!(report, "exports:")?;
    for (name, item) in ty.exports(engine) {
        writeln!(report, "  {name}{}", functions(engine, &item.ty))?;
    }
    let fits = match sandbox.load(path) {
        Ok(_) => {
            writeln!(report, "fits {CONTRACT}: yes")?;
            true
        }
        Err(e) => {
            writeln!(report, "fits {CONTRACT}: no\n  {e}")?;
            false
        }
    };
    Ok(Inspection { report, fits })
}

/// `: init, on-request, …` for an interface instance; nothing for other items.
fn functions(engine: &wasmtime::Engine, item: &ComponentItem) -> String {
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let names: Vec<&str> = instance.exports(engine).map(|(name, _)| name).collect();
            format!(": {}", names.join(", "))
        }
        _ => String::new(),
    }
}
