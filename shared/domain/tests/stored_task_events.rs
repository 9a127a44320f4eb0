//! Task events as earlier builds stored them read back and write out again
//! byte for byte, so their stored hashes stay valid whatever shape the Rust
//! types take. The lines are verbatim: most from the embedded fixtures
//! (tests/fixtures/embedded, written by past releases), the rest written by
//! the build before `created` carried a `TaskSpec` (zip exports, logs, a
//! start without an execution, fractional seconds).

use taskgate_domain::task::{TaskEvent, verify};

/// Stored events, one JSON text each, as the stores keep them.
const STORED: &[&str] = &[
    // release-schema-v9.db: a delay of 0 s that succeeded.
    r#"{"task_id":"01a24237-ab93-7564-9dfe-5b7cc66ebbc6","seq":1,"at":"2026-12-04T18:01:14.387Z","actor":"alice","type":"created","data":{"kind":"delay","seconds":0.0,"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"user","due_at":"2026-12-04T18:01:14.387Z","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"9256f78bc58fc21b79ac6d5722bb34c8c2a1f3ee08cc35b2eacde4352de3760f"}"#,
    r#"{"task_id":"01a24237-ab93-7564-9dfe-5b7cc66ebbc6","seq":2,"at":"2026-12-04T18:01:14.389Z","type":"started","data":{"execution":"local:bc205bbecbc648d0957129c65078a0b2:01a24237-ab93-7564-9dfe-5b7cc66ebbc6"},"prev_hash":"9256f78bc58fc21b79ac6d5722bb34c8c2a1f3ee08cc35b2eacde4352de3760f","hash":"10401d2151d96bd36731ee6334fd3a0f77ef5503c71c9280430f137e5add580e"}"#,
    r#"{"task_id":"01a24237-ab93-7564-9dfe-5b7cc66ebbc6","seq":3,"at":"2026-12-04T18:01:14.391Z","type":"succeeded","data":{"result":0},"prev_hash":"10401d2151d96bd36731ee6334fd3a0f77ef5503c71c9280430f137e5add580e","hash":"2d5874af3e666128ab6ff1a25f3d3d53739e5b5216b6d1638a83ef825ffb6ffe"}"#,
    // A script that threw.
    r#"{"task_id":"01a24237-abac-761d-b24f-44be43d57967","seq":1,"at":"2026-12-04T18:01:14.412Z","actor":"admin","type":"created","data":{"kind":"js","code":"throw new Error(\"boom\")","owner":"admin","owner_id":"223980ea-ad24-4436-b348-17ea488d7732","owner_level":"admin","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"4ba2de67ee0470d0c46bc4f0ecffca88ae24cf065a1ce07167031667530a3945"}"#,
    r#"{"task_id":"01a24237-abac-761d-b24f-44be43d57967","seq":2,"at":"2026-12-04T18:01:14.423Z","type":"started","data":{"execution":"local:bc205bbecbc648d0957129c65078a0b2:01a24237-abac-761d-b24f-44be43d57967"},"prev_hash":"4ba2de67ee0470d0c46bc4f0ecffca88ae24cf065a1ce07167031667530a3945","hash":"008d422e912930529be95cf4ee140d37769253973e144fb7190442d488f39278"}"#,
    r#"{"task_id":"01a24237-abac-761d-b24f-44be43d57967","seq":3,"at":"2026-12-04T18:01:14.450Z","type":"failed","data":{"error":{"code":"script-error","message":"uncaught Error: boom (unknown at :1:7)"}},"prev_hash":"008d422e912930529be95cf4ee140d37769253973e144fb7190442d488f39278","hash":"a03e64a09e596069aeb909e8cab42cb674d2eb9177fe751b1be9f9ad171cc089"}"#,
    // A delay of an hour, cancelled.
    r#"{"task_id":"01a24237-abce-740c-a719-f486838ee690","seq":1,"at":"2026-12-04T18:01:14.446Z","actor":"alice","type":"created","data":{"kind":"delay","seconds":3600.0,"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"user","due_at":"2026-12-04T19:01:14.446Z","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"54228402bb41ee015ff70ad9d788b5e614e1736a3ab00a352040f166b56760df"}"#,
    r#"{"task_id":"01a24237-abce-740c-a719-f486838ee690","seq":2,"at":"2026-12-04T18:01:14.448Z","type":"started","data":{"execution":"local:bc205bbecbc648d0957129c65078a0b2:01a24237-abce-740c-a719-f486838ee690"},"prev_hash":"54228402bb41ee015ff70ad9d788b5e614e1736a3ab00a352040f166b56760df","hash":"f892be3bd50ecdbf120aef6e85597079f214d3670decf0d36df7a34112ec8575"}"#,
    r#"{"task_id":"01a24237-abce-740c-a719-f486838ee690","seq":3,"at":"2026-12-04T18:01:14.550Z","actor":"alice","type":"cancelled","data":{"by":"alice"},"prev_hash":"f892be3bd50ecdbf120aef6e85597079f214d3670decf0d36df7a34112ec8575","hash":"6b147047437e8dee6815b93ae93ef22e95d6f922582a928355c416f8e6f9e586"}"#,
    // A CSV export of a project.
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290da","seq":1,"at":"2026-12-04T18:01:15.144Z","actor":"alice","type":"created","data":{"kind":"export","export":{"format":"csv","project":"01a24237-ac42-7279-b730-476c47f8c3af"},"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"user","engine":"local:bc205bbecbc648d0957129c65078a0b2"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c"}"#,
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290da","seq":2,"at":"2026-12-04T18:01:15.146Z","type":"started","data":{"execution":"local:bc205bbecbc648d0957129c65078a0b2:01a24237-ae88-749e-934a-4847f78290da"},"prev_hash":"53708262ea786316884d0a43477879f2ace9a563b2580b6fcebfa6f405e7145c","hash":"082255db78cf61f9e55cf56563e1ad86263fd56544055058411a8a006db1cc46"}"#,
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290da","seq":3,"at":"2026-12-04T18:01:15.159Z","type":"succeeded","data":{"result":{"file":"01a24237-ae88-749e-934a-4847f78290da","sha256":"d68408c04f4cab9cae05809d3906e9cdc4c4cf6e194433479138887503e48061","size":345}},"prev_hash":"082255db78cf61f9e55cf56563e1ad86263fd56544055058411a8a006db1cc46","hash":"fc719d7511a1db55e707252aa4e1dd84760a8b094b2deaacfcec88f2fce29f34"}"#,
    // schema-v3.db: a script from before engines were recorded.
    r#"{"task_id":"01a215e2-6808-70dc-b9c4-f1818169ffc3","seq":1,"at":"2026-11-26T03:24:49.032Z","actor":"admin","type":"created","data":{"kind":"js","code":"[1,2,3].map(x => x * 2)","owner":"admin","owner_id":"be5c6b6e-65c2-4585-bb77-eb1922865c70","owner_level":"admin"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"fd329befb50280dd38e1a783dee65e874fa2a396dc0fb672b65cebcc506509ce"}"#,
    r#"{"task_id":"01a215e2-6808-70dc-b9c4-f1818169ffc3","seq":2,"at":"2026-11-26T03:24:49.033Z","type":"started","data":{"execution":"local:01a215e2-6808-70dc-b9c4-f1818169ffc3"},"prev_hash":"fd329befb50280dd38e1a783dee65e874fa2a396dc0fb672b65cebcc506509ce","hash":"ea1bb298dd9fff310c2940718c406c22bdebbfa64c1412d44055cbf3f0fe8c4c"}"#,
    r#"{"task_id":"01a215e2-6808-70dc-b9c4-f1818169ffc3","seq":3,"at":"2026-11-26T03:24:49.047Z","type":"succeeded","data":{"result":[2,4,6]},"prev_hash":"ea1bb298dd9fff310c2940718c406c22bdebbfa64c1412d44055cbf3f0fe8c4c","hash":"3b9baf32d76ed93a4b7a6bcab95dbe05b781a7f26093f32ec60f2a6cc4bcc9e8"}"#,
    // Written by the build before `created` carried a TaskSpec: a zip
    // export on Step Functions (no execution recorded), with two ends.
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":1,"at":"2026-12-05T09:00:00.125Z","actor":"alice","type":"created","data":{"kind":"export","export":{"format":"zip","files":["01a24237-ac42-7279-b730-476c47f8c3b0","01a24237-ac42-7279-b730-476c47f8c3b1"]},"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"user","engine":"step-functions"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"8c490be8e84a9cf3751fd76943a0cdd5e8f9b3942f93110ee36fcfd3d7d8c9d5"}"#,
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":2,"at":"2026-12-05T09:00:00.125Z","type":"started","data":{},"prev_hash":"8c490be8e84a9cf3751fd76943a0cdd5e8f9b3942f93110ee36fcfd3d7d8c9d5","hash":"ecdf65153699bb00e9102c67cda17c7b5211f41dfc6960832834f18c904960c6"}"#,
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":3,"at":"2026-12-05T09:00:00.125Z","type":"succeeded","data":{"result":{"a":[1.5,null,"xé\n"]},"logs":["one","two \"quoted\""]},"prev_hash":"ecdf65153699bb00e9102c67cda17c7b5211f41dfc6960832834f18c904960c6","hash":"0416ef0683ecd6ea04f54dffb77c3bfc97e59aee6da075c3294e07aa938c4066"}"#,
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":3,"at":"2026-12-05T09:00:00.125Z","type":"failed","data":{"error":{"code":"timeout","message":"took too long"},"logs":["before"]},"prev_hash":"ecdf65153699bb00e9102c67cda17c7b5211f41dfc6960832834f18c904960c6","hash":"08ceb38dc41a29bf2eb748776aae753262a7626af1b1aa0a69f2642a53716e2e"}"#,
    // An admin's delay of fractional seconds, no engine recorded.
    r#"{"task_id":"01a24237-ae88-749e-934a-4847f78290db","seq":1,"at":"2026-12-05T09:00:00.125Z","actor":"alice","type":"created","data":{"kind":"delay","seconds":2.75,"owner":"alice","owner_id":"0bdbd1d9-6150-412a-a953-d8954f70cb91","owner_level":"admin","due_at":"2026-12-05T09:00:02.875Z"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"454ca24493f8f9c83cf33ee13e3e1dbef15bf6309227c5a8baee037f8a097e77"}"#,
];

fn parsed(stored: &str) -> TaskEvent {
    serde_json::from_str(stored).unwrap_or_else(|e| panic!("{e}: {stored}"))
}

#[test]
fn stored_events_write_out_byte_for_byte_as_they_were_stored() {
    for stored in STORED {
        let event = parsed(stored);
        assert_eq!(&serde_json::to_string(&event).unwrap(), stored);
    }
}

#[test]
fn stored_hashes_still_match_the_events_they_cover() {
    for stored in STORED {
        let event = parsed(stored);
        assert_eq!(event.computed_hash(), event.hash, "{stored}");
    }
}

#[test]
fn stored_logs_still_verify_as_chains() {
    // Whole logs, by their lines above: the fixtures' five, then the zip
    // export ending either way.
    let logs: [&[usize]; 7] = [
        &[0, 1, 2],
        &[3, 4, 5],
        &[6, 7, 8],
        &[9, 10, 11],
        &[12, 13, 14],
        &[15, 16, 17],
        &[15, 16, 18],
    ];
    for lines in logs {
        let events: Vec<TaskEvent> = lines.iter().map(|&i| parsed(STORED[i])).collect();
        assert_eq!(verify(&events[0].stream, &events), [], "lines {lines:?}");
    }
}
