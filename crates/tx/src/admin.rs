//! Start-up work on the TX thread before it serves anyone: the admin password.

use spindle_box::catalog::sys;
use spindle_box::{Dml, Txn};
use spindle_types::iproto::IteratorType;
use spindle_types::BoxResult;

use crate::state::TxRef;

/// Sets `admin`'s password (a logged `_user` replace) if it differs from the stored one.
pub fn set_admin_password(tx: TxRef, password: &str) -> BoxResult<()> {
    tx.with(|t| {
        let row = spindle_box::bootstrap::admin_row(password);
        let admin_key = [0x91, 0x01];
        let users = &t.db.space(sys::USER)?.space;
        let current = users.select(0, IteratorType::Eq, &admin_key, 0, 1)?;
        if current.first().is_some_and(|c| c.data() == row.as_slice()) {
            return Ok(());
        }
        let mut txn = Txn::new();
        t.db.apply(
            &mut txn,
            Dml::Replace {
                space_id: sys::USER,
                tuple: &row,
            },
        )?;
        t.commit_detached(txn);
        t.flush_journal();
        t.publish_schema_version();
        Ok(())
    })
}
