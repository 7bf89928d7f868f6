//! Settings of the manual provisioning package.

use idlink_model::package::SettingsSchema;

/// None: tickets live in the server, not in a managed system.
pub static SETTINGS: SettingsSchema = SettingsSchema::EMPTY;
