//! `[mqtt.auth]` with Mosquitto's own tools: a password file made by `mosquitto_passwd`, an ACL
//! file in Mosquitto's format, and `mosquitto_pub`/`mosquitto_sub` logging in with `-u/-P`.
//! `.ci/run` installs them (package `mosquitto` for `mosquitto_passwd`, `mosquitto-clients`
//! for the others) and sets HEADWATER_REQUIRE_CLIENTS, so there they must run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use headwater::config::MqttAuth;
use headwater_tests::{system_client, InProcess};

const ACL: &str = "\
user sensor
topic write plant/#

user reader
topic read plant/#
topic deny plant/secret/#
";

struct Tools {
    passwd: PathBuf,
    publish: PathBuf,
    subscribe: PathBuf,
}

fn tools() -> Option<Tools> {
    Some(Tools {
        passwd: system_client("mosquitto_passwd")?,
        publish: system_client("mosquitto_pub")?,
        subscribe: system_client("mosquitto_sub")?,
    })
}

/// `mosquitto_passwd -b` for each user (the first call creates the file).
fn password_file(tool: &Path, path: &Path, users: &[(&str, &str)]) {
    for (i, (user, pass)) in users.iter().enumerate() {
        let mut cmd = Command::new(tool);
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg("-b")
            .arg(path)
            .args([user, pass])
            .status()
            .expect("mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd for {user}");
    }
}

fn publish(tools: &Tools, port: &str, args: &[&str]) -> Output {
    Command::new(&tools.publish)
        .args(["-h", "127.0.0.1", "-p", port, "-q", "1"])
        .args(args)
        .output()
        .expect("mosquitto_pub")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_tools_log_in_and_the_acl_filters() {
    let Some(tools) = tools() else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let pw = files.path().join("passwd");
    let acl = files.path().join("acl");
    password_file(
        &tools.passwd,
        &pw,
        &[("sensor", "s3cret"), ("reader", "r3ad only")],
    );
    std::fs::write(&acl, ACL).unwrap();
    let hw = InProcess::start_with(|c| {
        c.mqtt.auth = Some(MqttAuth {
            password_file: Some(pw.clone()),
            acl_file: Some(acl.clone()),
            ..MqttAuth::default()
        });
    })
    .await;
    let port = hw.mqtt().port().to_string();

    let sub = Command::new(&tools.subscribe)
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1"])
        .args(["-u", "reader", "-P", "r3ad only", "-t", "plant/#"])
        .args(["-C", "1", "-v", "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    // Give the subscriber time to connect and subscribe before the publishes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let login = ["-u", "sensor", "-P", "s3cret"];
    for (topic, payload) in [("plant/secret/key", "hidden"), ("plant/boiler", "42")] {
        let out = publish(
            &tools,
            &port,
            &[&login[..], &["-t", topic, "-m", payload]].concat(),
        );
        assert!(out.status.success(), "publish {topic}: {}", stderr(&out));
    }
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap())
        .await
        .unwrap();
    // The reader may not read plant/secret/...: its first message is the boiler's.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "plant/boiler 42"
    );

    // Wrong password, unknown user, anonymous: refused, with the CONNACK's reason.
    for version in ["mqttv311", "mqttv5"] {
        for login in [
            ["-u", "sensor", "-P", "wrong"],
            ["-u", "nobody", "-P", "s3cret"],
        ] {
            let args = [&login[..], &["-V", version, "-t", "plant/x", "-m", "1"]].concat();
            let out = publish(&tools, &port, &args);
            assert!(!out.status.success(), "{version} {login:?} must be refused");
            assert!(
                stderr(&out).contains("bad user name or password"),
                "{version}: {}",
                stderr(&out)
            );
        }
        let out = publish(&tools, &port, &["-V", version, "-t", "plant/x", "-m", "1"]);
        assert!(!out.status.success(), "{version} anonymous must be refused");
        assert!(
            stderr(&out).contains("not author"),
            "{version}: {}",
            stderr(&out)
        );
    }

    // MQTT 5: a publish without write access gets PUBACK "not authorized".
    let args = ["-u", "reader", "-P", "r3ad only", "-V", "mqttv5"];
    let out = publish(
        &tools,
        &port,
        &[&args[..], &["-t", "plant/x", "-m", "1"]].concat(),
    );
    assert!(stderr(&out).contains("not authorized"), "{}", stderr(&out));
    hw.broker.stop().await;
}
