use weir_sdk::{Action, Plugin, Request, Result};
#[derive(serde::Deserialize)]
struct AddHeader { name: String, value: String }
impl Plugin for AddHeader {
    fn on_request(&self, req: &mut Request) -> Result<Action> {
        req.set_header(&self.name, &self.value)?;
        Ok(Action::Continue)
    }
}
weir_sdk::export!(AddHeader);
