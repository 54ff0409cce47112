use super::*;

fn members(k: usize, zones: usize) -> Vec<Member> {
    (0..k)
        .map(|i| {
            let zone = (zones > 0).then(|| format!("z{}", i % zones));
            Member::new(format!("node-{i:02}"), zone.as_deref())
        })
        .collect()
}

#[test]
#[ignore]
fn explore() {
    for &q in &[8u32, 16, 32, 64, 128, 256, 1024] {
        for n in 1..=5usize {
            let mut worst_join = (0i64, 0usize, 0usize);
            let mut worst_leave = (0i64, 0usize, 0usize);
            for k in 1..=32usize {
                let all = members(k + 1, 0);
                let before = claim(q, &all[..k], n, None);
                let qa = assess(&before, &all[..k], n);
                let feas = claim_feasible(q, k, n);
                assert!(qa.max_owned - qa.min_owned <= 1);
                if feas {
                    assert_eq!(qa.node_violations, 0, "q={q} n={n} k={k}");
                }
                let after = claim(q, &all, n, Some(&before));
                let qb = assess(&after, &all, n);
                let mv = after.moved_partitions(&before).len();
                let ideal = (q as usize).div_ceil(k + 1);
                if claim_feasible(q, k + 1, n) && feas {
                    assert_eq!(qb.node_violations, 0);
                    let extra = mv as i64 - ideal as i64;
                    if extra > worst_join.0 {
                        worst_join = (extra, k, mv);
                    }
                }
                // leave: from k+1 to k (remove the last)
                let base = claim(q, &all, n, None);
                let left = claim(q, &all[..k], n, Some(&base));
                let lost = base.partitions_of(&all[k].id).len();
                let mv = left.moved_partitions(&base).len();
                if claim_feasible(q, k + 1, n) && feas {
                    let extra = mv as i64 - lost as i64;
                    if extra > worst_leave.0 {
                        worst_leave = (extra, k, mv);
                    }
                }
            }
            if q == 256 || q == 64 {
                for k in 1..=32usize {
                    let all = members(k + 1, 0);
                    let base = claim(q, &all, n, None);
                    let left = claim(q, &all[..k], n, Some(&base));
                    let lost = base.partitions_of(&all[k].id).len();
                    let mv = left.moved_partitions(&base).len();
                    let qa = assess(&left, &all[..k], n);
                    print!(" k={k}:{}{}/{}", if claim_feasible(q, k, n) {""} else {"!"}, mv as i64 - lost as i64, qa.node_violations);
                }
                println!();
            }
            println!("q={q} n={n} join worst (extra,k,moved)={worst_join:?} leave worst={worst_leave:?}");
        }
    }
}

#[test]
#[ignore]
fn explore_leave() {
    for &(q, n, k) in &[(256u32, 3usize, 7usize), (256, 3, 10), (64, 3, 8), (256, 4, 8)] {
        let all = members(k + 1, 0);
        let base = claim(q, &all, n, None);
        let ms = normalise(&all[..k]);
        let zones = zone_indices(&ms);
        let win = n.min(q as usize);
        let layout = Layout { q: q as usize, zone_of: zones.zone_of, win, node_goal: win.min(k), zone_goal: win.min(zones.count) };
        let prev: Vec<u32> = base.owners().iter().map(|o| ms.iter().position(|m| &m.id == o).map_or(HOLE, |i| i as u32)).collect();
        let inc = layout.incremental(&prev);
        let lost = prev.iter().filter(|&&o| o == HOLE).count();
        match inc {
            Some(own) => println!("q={q} n={n} k={k} lost={lost} inc cost={} moved={}", layout.total_cost(&own) / NODE_WEIGHT, moved(&prev, &own)),
            None => println!("q={q} n={n} k={k} inc None"),
        }
        let fr = layout.fresh(&prev);
        println!("   fresh cost={} moved={}", layout.total_cost(&fr) / NODE_WEIGHT, moved(&prev, &fr));
    }
}
