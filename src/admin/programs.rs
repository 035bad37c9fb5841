//! The programs page (read-only): per branch, the programs in force now
//! with their public descriptions, then every version of every program.

use std::fmt::Write;

use hyper::Response;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::html::esc;
use super::Ctx;
use crate::api;
use crate::programs::{ProgramConfig, ProgramType};

fn type_name(t: ProgramType) -> &'static str {
    match t {
        ProgramType::Cashback => "cashback",
        ProgramType::Bonus => "bonus",
        ProgramType::Discount => "discount",
        ProgramType::GroupBonus => "group bonus",
    }
}

fn valid_from(p: &ProgramConfig) -> String {
    p.valid_from
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "always".into())
}

fn rate(p: &ProgramConfig) -> String {
    match (&p.percent, p.rules.is_empty()) {
        (Some(percent), _) => format!("{}%", percent.value()),
        (None, false) => p
            .rules
            .iter()
            .map(|r| format!("{} {}%", r.category, r.percent.value()))
            .collect::<Vec<_>>()
            .join(", "),
        (None, true) => String::new(),
    }
}

/// `GET /admin/programs`; `config_version` counts the reloads (SIGHUP).
pub(crate) fn page(ctx: &Ctx, config_version: u64) -> Response<api::Body> {
    let now = OffsetDateTime::now_utc();
    let tenant = &ctx.tenant;
    let mut body = format!(
        "<p class=\"muted\">Read-only: programs are edited in the tenant file and reloaded with SIGHUP. \
Programs loaded: version {config_version} of this process.</p>"
    );
    for (id, branch) in &tenant.branches {
        let label = if branch.name.is_empty() { id } else { &branch.name };
        let _ = write!(
            body,
            "<h2>{}</h2><table class=\"branch\" data-branch=\"{}\"><thead><tr><th>Program</th><th>Type</th>\
<th>Account</th><th>Rate</th><th>Version from</th><th>Description</th></tr></thead><tbody>",
            esc(label),
            esc(id)
        );
        let mut any = false;
        for p in tenant.programs_at(now).filter(|p| p.active_in(id)) {
            any = true;
            let _ = write!(
                body,
                "<tr data-program=\"{pid}\"><td>{pid}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                type_name(p.program_type),
                esc(p.account()),
                esc(&rate(p)),
                esc(&valid_from(p)),
                esc(&p.description),
                pid = esc(&p.id),
            );
        }
        if !any {
            body.push_str("<tr><td colspan=\"6\" class=\"muted\">No program is active in this branch.</td></tr>");
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(
        "<h2>Every version</h2><table id=\"versions\"><thead><tr><th>Program</th><th>From</th><th>In force</th>\
<th>Type</th><th>Rate</th><th>Active in</th></tr></thead><tbody>",
    );
    let current: Vec<*const ProgramConfig> = tenant.programs_at(now).map(std::ptr::from_ref).collect();
    for p in tenant.programs.iter() {
        let active: Vec<&str> = p
            .branches
            .keys()
            .filter(|b| p.active_in(b))
            .map(String::as_str)
            .collect();
        let in_force = if current.contains(&std::ptr::from_ref(p)) {
            "now"
        } else if p.valid_from.is_some_and(|from| from > now) {
            "later"
        } else {
            "replaced"
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{in_force}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.id),
            esc(&valid_from(p)),
            type_name(p.program_type),
            esc(&rate(p)),
            esc(&active.join(", ")),
        );
    }
    body.push_str("</tbody></table>");
    ctx.page("Programs", "Programs", &body)
}
