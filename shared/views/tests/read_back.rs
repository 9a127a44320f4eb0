//! The views the client reads besides tasks: what the server writes reads
//! back into the same types, owned, and writes out unchanged.

use serde::Serialize;
use serde::de::DeserializeOwned;
use taskgate_views::{ExportResult, List, Page, Problem, owned};

/// `text` reads as a `T` that writes it again, byte for byte.
fn reads_back<T: Serialize + DeserializeOwned>(text: &str) {
    let read: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(serde_json::to_string(&read).unwrap(), text);
}

#[test]
fn every_view_reads_back_as_it_was_written() {
    reads_back::<owned::Hello>(
        r#"{"message":"Hello World","user":{"username":"alice","level":"user","email":"alice@example.com","profile":{"team":"blue"},"created_at":"2026-11-21T18:25:03.053Z","updated_at":"2026-11-21T18:25:03.053Z"}}"#,
    );
    reads_back::<owned::Hello>(r#"{"message":"Hello World"}"#);
    // A script whose value is null: its result is there, and null.
    reads_back::<owned::Task>(
        r#"{"id":"01a24237-abac-761d-b24f-44be43d57967","type":"js","status":"succeeded","owner":"admin","created_at":"2026-12-04T18:01:14.412Z","updated_at":"2026-12-04T18:01:14.414Z","result":null,"logs":[]}"#,
    );
    reads_back::<owned::LoginResponse>(
        r#"{"token":"t.o.k","token_type":"Bearer","expires_at":"2026-11-21T19:25:03.000Z","expires_in":3600,"device_token":"d.e.v"}"#,
    );
    reads_back::<Page<owned::File>>(
        r#"{"items":[{"id":"01a24237-ae88-749e-934a-4847f78290da","name":"a.csv","content_type":"text/csv","size":10,"offset":4,"status":"uploading","owner":"alice","created_at":"2026-12-04T18:01:15.144Z","expires_at":"2026-12-05T18:01:15.144Z"},{"id":"01a24237-ae88-749e-934a-4847f78290db","name":"b.zip","content_type":"application/zip","size":3,"offset":3,"status":"complete","sha256":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c","owner":"alice","created_at":"2026-12-04T18:01:15.144Z"}],"next":"c"}"#,
    );
    reads_back::<Page<owned::Project>>(
        r#"{"items":[{"id":"01a24237-ac42-7279-b730-476c47f8c3af","name":"Launch","description":"d","owner":"alice","role":"admin","created_at":"2026-12-04T18:01:15.144Z","updated_at":"2026-12-04T18:01:15.144Z"}],"next":null}"#,
    );
    reads_back::<List<owned::Member>>(
        r#"{"items":[{"username":"bob","role":"member","added_at":"2026-12-04T18:01:15.144Z"}]}"#,
    );
    reads_back::<owned::Item>(
        r#"{"id":"01a24237-ae88-749e-934a-4847f78290dc","project_id":"01a24237-ac42-7279-b730-476c47f8c3af","title":"Book the room","status":"in_progress","due_date":"2026-12-01","assignee":"bob","created_by":"alice","created_at":"2026-12-04T18:01:15.144Z","updated_at":"2026-12-04T18:01:15.145Z","version":2}"#,
    );
    reads_back::<List<owned::ItemEvent>>(
        r#"{"items":[{"seq":1,"at":"2026-12-04T18:01:15.144Z","actor":"alice","type":"created","data":{"project_id":"01a24237-ac42-7279-b730-476c47f8c3af","title":"Book the room","status":"pending","created_by":"alice"},"hash":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"},{"seq":2,"at":"2026-12-04T18:01:15.145Z","actor":"alice","type":"updated","data":{"due_date":null},"hash":"4ba2de67ee0470d0c46bc4f0ecffca88ae24cf065a1ce07167031667530a3945","prev_hash":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c"}]}"#,
    );
    reads_back::<Problem>(
        r#"{"type":"urn:taskgate:problem:invalid-field","title":"Invalid fields","status":422,"detail":"invalid value for: password","errors":[{"field":"password","message":"is too short"}],"request_id":"3f1c0c7e2b8a4e0f9d6a5b4c3d2e1f00"}"#,
    );
    reads_back::<ExportResult>(
        r#"{"file":"01a24237-ae88-749e-934a-4847f78290da","size":1,"sha256":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c"}"#,
    );
}

#[test]
fn a_view_with_a_field_it_does_not_have_is_refused() {
    let text =
        r#"{"username":"bob","role":"member","added_at":"2026-12-04T18:01:15.144Z","extra":1}"#;
    assert!(serde_json::from_str::<owned::Member>(text).is_err());
}
