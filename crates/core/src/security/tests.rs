use super::*;
use proptest::prelude::*;

fn n(id: &str) -> NodeId {
    NodeId::from(id)
}

fn groups(gs: &[&str]) -> BTreeSet<String> {
    gs.iter().map(|g| g.to_string()).collect()
}

/// A state with user `alice` (group `ops`) holding token "alice-token-0123456789".
fn with_alice() -> SecurityState {
    let mut s = SecurityState::default();
    s.put_user("alice", groups(&["ops"]), &n("1")).unwrap();
    s.add_token(
        "alice",
        "t1",
        hash_token("alice-token-0123456789"),
        None,
        &n("1"),
    )
    .unwrap();
    s
}

#[test]
fn a_live_token_authenticates_its_user_and_groups() {
    let s = with_alice();
    let p = s.authenticate("alice-token-0123456789", 0).unwrap();
    assert_eq!(p.user, "alice");
    assert_eq!(p.groups, groups(&["ops"]));
    assert_eq!(s.authenticate("someone-elses-token", 0), Err(AuthError));
}

#[test]
fn revoked_expired_and_orphaned_tokens_are_the_same_refusal() {
    let mut s = with_alice();
    s.add_token(
        "alice",
        "t2",
        hash_token("short-lived-token-xx"),
        Some(1_000),
        &n("1"),
    )
    .unwrap();
    assert!(s.authenticate("short-lived-token-xx", 999).is_ok());
    assert_eq!(
        s.authenticate("short-lived-token-xx", 1_000),
        Err(AuthError)
    );
    s.revoke_token("alice", "t1", &n("1")).unwrap();
    assert_eq!(s.authenticate("alice-token-0123456789", 0), Err(AuthError));
    // Another user's token id cannot be revoked through this user.
    let mut s = with_alice();
    s.put_user("bob", BTreeSet::new(), &n("1")).unwrap();
    assert!(matches!(
        s.revoke_token("bob", "t1", &n("1")),
        Err(SecurityError::NoSuchToken { .. })
    ));
    // Removing the user revokes every token of theirs.
    s.remove_user("alice", &n("1")).unwrap();
    assert_eq!(s.authenticate("alice-token-0123456789", 0), Err(AuthError));
    assert_eq!(s.tokens_of("alice").count(), 0);
    assert!(!s.never_had_users());
}

#[test]
fn grants_by_bucket_star_and_group() {
    let mut s = with_alice();
    let alice = s.authenticate("alice-token-0123456789", 0).unwrap();
    assert!(!s.authorize(&alice, Permission::Get, Some(b"cart")));
    s.set_grant(
        &Subject::User("alice".into()),
        "cart",
        &[Permission::Get],
        true,
        &n("1"),
    )
    .unwrap();
    assert!(s.authorize(&alice, Permission::Get, Some(b"cart")));
    assert!(!s.authorize(&alice, Permission::Get, Some(b"other")));
    assert!(!s.authorize(&alice, Permission::Put, Some(b"cart")));
    s.set_grant(
        &Subject::Group("ops".into()),
        "*",
        &[Permission::Put],
        true,
        &n("1"),
    )
    .unwrap();
    assert!(s.authorize(&alice, Permission::Put, Some(b"other")));
    assert!(!s.authorize(&alice, Permission::Admin, None));
    s.set_grant(
        &Subject::User("alice".into()),
        "cart",
        &[Permission::Get],
        false,
        &n("1"),
    )
    .unwrap();
    assert!(!s.authorize(&alice, Permission::Get, Some(b"cart")));
    assert_eq!(s.live_grants().len(), 1);
}

#[test]
fn cluster_wide_permissions_only_on_star() {
    let mut s = with_alice();
    let alice = s.authenticate("alice-token-0123456789", 0).unwrap();
    assert_eq!(
        s.set_grant(
            &Subject::User("alice".into()),
            "b",
            &[Permission::Admin],
            true,
            &n("1")
        ),
        Err(SecurityError::ClusterWide(Permission::Admin))
    );
    s.set_grant(
        &Subject::User("alice".into()),
        "*",
        &[Permission::Metrics],
        true,
        &n("1"),
    )
    .unwrap();
    assert!(s.authorize(&alice, Permission::Metrics, None));
    assert!(!s.authorize(&alice, Permission::Admin, None));
}

#[test]
fn names_subjects_and_permissions_parse() {
    assert_eq!(
        "user:a".parse::<Subject>().unwrap(),
        Subject::User("a".into())
    );
    assert_eq!(
        "group:g-1".parse::<Subject>().unwrap(),
        Subject::Group("g-1".into())
    );
    for bad in ["a", "user:", "role:x", "user:a b"] {
        assert!(bad.parse::<Subject>().is_err(), "{bad}");
    }
    assert_eq!("props".parse::<Permission>().unwrap(), Permission::Props);
    assert!("write".parse::<Permission>().is_err());
    assert!(check_name(&"x".repeat(65)).is_err());
}

#[test]
fn a_tombstone_wins_over_an_older_live_entry() {
    let base = with_alice();
    let old = base.clone();
    let mut s = base;
    s.remove_user("alice", &n("2")).unwrap();
    assert!(!s.merge(&old), "an older copy changes nothing");
    assert!(s.user("alice").is_none());
    assert_eq!(s.authenticate("alice-token-0123456789", 0), Err(AuthError));
    let mut o = old;
    assert!(o.merge(&s));
    assert_eq!(o, s);
}

#[test]
fn the_stored_form_round_trips_through_json_in_postcard() {
    #[derive(Serialize, Deserialize)]
    struct Frame(#[serde(with = "crate::json_field")] SecurityState);
    let mut s = with_alice();
    s.set_grant(
        &Subject::Group("ops".into()),
        "*",
        &[Permission::Admin],
        true,
        &n("1"),
    )
    .unwrap();
    s.set_grant(
        &Subject::User("alice".into()),
        "b",
        &[Permission::Get],
        false,
        &n("1"),
    )
    .unwrap();
    let bytes = postcard::to_stdvec(&Frame(s.clone())).unwrap();
    let Frame(back) = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, s);
}

#[test]
fn bootstrap_creates_the_first_admin_once() {
    let mut s = SecurityState::default();
    assert_eq!(
        s.bootstrap("too-short", &n("1")),
        Err(SecurityError::ShortToken)
    );
    assert!(s.never_had_users());
    assert_eq!(s.bootstrap("  first-admin-token-0123\n", &n("1")), Ok(true));
    let admin = s.authenticate("first-admin-token-0123", 0).unwrap();
    assert_eq!(admin.user, "admin");
    assert!(s.authorize(&admin, Permission::Admin, None));
    assert!(!s.authorize(&admin, Permission::Get, Some(b"b")));
    // Once a user exists (even removed), a bootstrap token changes nothing.
    s.remove_user("admin", &n("1")).unwrap();
    assert_eq!(s.bootstrap("another-admin-token-0123", &n("1")), Ok(false));
    assert!(s.authenticate("another-admin-token-0123", 0).is_err());
}

#[test]
fn tokens_are_random_and_only_hashed() {
    let a = new_token();
    assert_ne!(a, new_token());
    assert!(a.len() >= 43);
    // Never mistaken for a flag on a command line (base64url may start with '-').
    for _ in 0..1000 {
        assert!(new_token().starts_with(TOKEN_PREFIX));
    }
    assert_eq!(hash_token(&a).len(), 64);
    assert_ne!(hash_token(&a), a);
}

/// One random write to a copy of the state, by one of three authors.
#[derive(Clone, Debug)]
enum Op {
    PutUser(u8, u8),
    RemoveUser(u8),
    AddToken(u8, u8),
    RevokeToken(u8, u8),
    Grant(u8, u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 0u8..3).prop_map(|(u, g)| Op::PutUser(u, g)),
        (0u8..3).prop_map(Op::RemoveUser),
        (0u8..3, 0u8..4).prop_map(|(u, t)| Op::AddToken(u, t)),
        (0u8..3, 0u8..4).prop_map(|(u, t)| Op::RevokeToken(u, t)),
        (0u8..3, 0u8..3, any::<bool>()).prop_map(|(u, p, g)| Op::Grant(u, p, g)),
    ]
}

fn apply(s: &mut SecurityState, op: &Op, author: &NodeId) {
    let user = |u: &u8| format!("u{u}");
    // Refusals (a user that does not exist) are part of the game: ignored.
    let _ = match op {
        Op::PutUser(u, g) => s.put_user(&user(u), groups(&[&format!("g{g}")]), author),
        Op::RemoveUser(u) => s.remove_user(&user(u), author),
        Op::AddToken(u, t) => s.add_token(
            &user(u),
            &format!("t{t}"),
            hash_token(&format!("tok{t}")),
            None,
            author,
        ),
        Op::RevokeToken(u, t) => s.revoke_token(&user(u), &format!("t{t}"), author),
        Op::Grant(u, p, g) => s.set_grant(
            &Subject::User(user(u)),
            "*",
            &[Permission::ALL[*p as usize]],
            *g,
            author,
        ),
    };
}

proptest! {
    /// Three copies written concurrently converge whatever the order of the merges, and a
    /// merge applied twice changes nothing.
    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        a_ops in proptest::collection::vec(op(), 0..12),
        b_ops in proptest::collection::vec(op(), 0..12),
        c_ops in proptest::collection::vec(op(), 0..12),
    ) {
        let mut a = SecurityState::default();
        let mut b = SecurityState::default();
        let mut c = SecurityState::default();
        for o in &a_ops { apply(&mut a, o, &n("a")); }
        for o in &b_ops { apply(&mut b, o, &n("b")); }
        for o in &c_ops { apply(&mut c, o, &n("c")); }
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab.clone();
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        prop_assert_eq!(&ab_c, &a_bc);
        let again = ab_c.clone();
        prop_assert!(!ab_c.merge(&again));
        prop_assert!(!ab_c.merge(&a));
    }

    /// Whatever happened concurrently, a removal seen by a copy is never undone by merging an
    /// older copy.
    #[test]
    fn removals_survive_older_gossip(ops in proptest::collection::vec(op(), 0..12)) {
        let mut s = SecurityState::default();
        for o in &ops { apply(&mut s, o, &n("a")); }
        let before = s.clone();
        let _ = s.remove_user("u0", &n("a"));
        let _ = s.revoke_token("u1", "t1", &n("a"));
        let after = s.clone();
        s.merge(&before);
        prop_assert_eq!(&s, &after);
    }
}
