use super::*;

#[test]
fn phases_step_one_at_a_time_and_stop_at_the_ends() {
    assert_eq!(Phase::Shadow.next(), Some(Phase::Limited));
    assert_eq!(Phase::Full.next(), None);
    assert_eq!(Phase::Shadow.previous(), None);
    assert_eq!(Phase::Full.previous(), Some(Phase::Limited));
    let cell = PhaseCell::new(Phase::Shadow);
    cell.set(Phase::Full);
    assert_eq!(cell.get(), Phase::Full);
    for p in Phase::ALL {
        assert_eq!(Phase::parse(p.as_str()), Some(p));
    }
}

#[test]
fn a_limited_cooldown_applies_to_about_half_the_fleet_and_always_the_same_half() {
    let ids: Vec<String> = (0..1000).map(|i| format!("host-{i}")).collect();
    let applied = ids
        .iter()
        .filter(|id| cooldown_applies(Phase::Limited, id))
        .count();
    assert!((400..600).contains(&applied), "{applied} of 1000");
    for id in &ids {
        assert_eq!(
            cooldown_applies(Phase::Limited, id),
            cooldown_applies(Phase::Limited, id)
        );
        assert!(cooldown_applies(Phase::Full, id));
        assert!(!cooldown_applies(Phase::Shadow, id));
    }
}

#[test]
fn changes_are_kept_in_the_run_manifest_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let scope = Scope::default();
    let settings = RolloutSettings {
        cooldown: Phase::Shadow,
        ..RolloutSettings::default()
    };
    let mut r = Rollouts::load(dir.path(), &scope, settings.clone()).unwrap();
    assert_eq!(
        r.cooldown.get(),
        Phase::Shadow,
        "the configured first phase"
    );
    let gates = vec![GateResult {
        gate: "sponsor-signoff".into(),
        pass: true,
        detail: "in force".into(),
        evidence: Some("ap-0a1b2c3d4e5f".into()),
    }];
    let at = 1_795_000_000_000;
    let c = change(
        Component::Cooldown,
        (Phase::Shadow, Phase::Limited),
        "erin",
        "signed off",
        false,
        gates,
        at,
    );
    r.record(c.clone()).unwrap();
    let run = r.run_id(Component::Cooldown).unwrap().to_owned();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join(".runs")
                .join(scope.as_str())
                .join("cli")
                .join(&run)
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["phase"], "limited");
    assert_eq!(manifest["changes"][0]["by"], "erin");

    // A restart keeps the recorded phase, not the configured one, and the change's time.
    let again = Rollouts::load(dir.path(), &scope, settings).unwrap();
    assert_eq!(again.cooldown.get(), Phase::Limited);
    assert_eq!(
        again.last_change(Component::Cooldown).map(|c| c.at_ms),
        Some(at)
    );
    assert_eq!(again.run_id(Component::Cooldown), Some(run.as_str()));
}

#[test]
fn a_damaged_record_is_named_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let scope = Scope::default();
    let path = dir.path().join(".runs/flotilla/rollout/state.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"cooldown\": \"sideways\"}").unwrap();
    let err = match Rollouts::load(dir.path(), &scope, RolloutSettings::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a damaged record was taken"),
    };
    assert!(err.contains("state.json"), "{err}");
}
