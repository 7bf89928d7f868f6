//! Settings of the unplugged package.

use idlink_model::package::SettingsSchema;

/// None: nothing is run for an unplugged connection.
pub static SETTINGS: SettingsSchema = SettingsSchema::EMPTY;
