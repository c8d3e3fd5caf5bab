//! Procedural chest anatomy on the case grid: body wall (skin, subcutaneous fat, muscle),
//! ribs, sternum and spine, lungs with a dependent density gradient, branching vessels and
//! airways, heart with epicardial fat, aorta and great vessels, trachea and main bronchi,
//! oesophagus, mediastinal fat with small normal nodes, diaphragm domes, liver, stomach and
//! spleen. Then partial-volume blur and quantum noise (`finish`).

use super::{lab, tissue, Canvas, Grid, Rng, Side, N_LABELS};

pub type P3 = [f64; 3];

#[inline]
pub fn sub(a: P3, b: P3) -> P3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
#[inline]
pub fn add(a: P3, b: P3) -> P3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
#[inline]
pub fn scale(a: P3, s: f64) -> P3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
#[inline]
pub fn dot(a: P3, b: P3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
#[inline]
pub fn norm(a: P3) -> f64 {
    dot(a, a).sqrt()
}
pub fn unit(a: P3) -> P3 {
    let n = norm(a).max(1e-9);
    scale(a, 1.0 / n)
}
#[inline]
pub fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}
#[inline]
pub fn clamp01(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}
pub fn smoothstep(e0: f64, e1: f64, x: f64) -> f64 {
    let t = clamp01((x - e0) / (e1 - e0));
    t * t * (3.0 - 2.0 * t)
}

/// Distance from p to segment ab and the segment parameter t ∈ [0, 1].
#[inline]
pub fn seg_dist(p: P3, a: P3, b: P3) -> (f64, f64) {
    let ab = sub(b, a);
    let l2 = dot(ab, ab).max(1e-12);
    let t = clamp01(dot(sub(p, a), ab) / l2);
    let q = add(a, scale(ab, t));
    (norm(sub(p, q)), t)
}

/// Visit voxels near the segment a→b (radius ra→rb, plus `margin` mm): f(canvas, idx, d − r, t).
pub fn for_segment(c: &mut Canvas, a: P3, b: P3, ra: f64, rb: f64, margin: f64, mut f: impl FnMut(&mut Canvas, usize, f64, f64)) {
    let r = ra.max(rb) + margin;
    let lo = [a[0].min(b[0]) - r, a[1].min(b[1]) - r, a[2].min(b[2]) - r];
    let hi = [a[0].max(b[0]) + r, a[1].max(b[1]) + r, a[2].max(b[2]) + r];
    let Some((l, h)) = c.grid.bbox(lo, hi) else {
        return;
    };
    for k in l[2]..=h[2] {
        for j in l[1]..=h[1] {
            for i in l[0]..=h[0] {
                let p = c.grid.world(i, j, k);
                let (d, t) = seg_dist(p, a, b);
                let rr = lerp(ra, rb, t);
                if d - rr < margin {
                    let idx = c.grid.idx(i, j, k);
                    f(c, idx, d - rr, t);
                }
            }
        }
    }
}

/// Visit voxels in a world box: f(canvas, idx, p).
pub fn for_box(c: &mut Canvas, lo: P3, hi: P3, mut f: impl FnMut(&mut Canvas, usize, P3)) {
    let Some((l, h)) = c.grid.bbox(lo, hi) else {
        return;
    };
    for k in l[2]..=h[2] {
        for j in l[1]..=h[1] {
            for i in l[0]..=h[0] {
                let p = c.grid.world(i, j, k);
                let idx = c.grid.idx(i, j, k);
                f(c, idx, p);
            }
        }
    }
}

/// Anti-aliased coverage of a voxel whose centre is `signed` mm outside a surface
/// (negative = inside), for an in-plane voxel of ~2.8 mm.
#[inline]
pub fn coverage(signed: f64) -> f64 {
    clamp01(0.5 - signed / 2.8)
}

/// A rib: posterior height z0 and the drop of its anterior end.
#[derive(Debug, Clone, Copy)]
pub struct Rib {
    pub z0: f64,
    pub drop: f64,
}

/// Where things are, for the lesion painters and the report.
pub struct Anatomy {
    pub procedural: bool,
    pub grid: Grid,
    /// Lung voxel indices: [right, left].
    pub lung_voxels: [Vec<u32>; 2],
    /// In-plane distance (mm) from a lung voxel to the nearest non-lung voxel (0 elsewhere).
    pub depth: Vec<f32>,
    /// Per side: (min, max) world z of the lung, (min, max) world y (anterior, posterior).
    pub lung_z: [(f64, f64); 2],
    pub lung_y: [(f64, f64); 2],
    pub lung_x: [(f64, f64); 2],
    pub noise_sigma: f64,
    pub blur: bool,
    // Procedural-only geometry (zeros for the real CT).
    pub body_ab: (f64, f64),
    pub fat_mm: f64,
    pub cavity_ab: (f64, f64),
    pub heart_c: P3,
    pub heart_r: P3,
    pub aorta: Vec<(P3, f64)>,
    pub coronaries: Vec<Vec<P3>>,
    pub spine_y: f64,
    pub vertebra_z: Vec<f64>,
    pub ribs: Vec<Rib>,
    pub carina: P3,
    pub hila: [P3; 2],
    pub esophagus: Vec<(P3, f64)>,
    /// Right and left dome tops (z mm).
    pub domes: (f64, f64),
    /// Airway segments inside the lungs: (a, b, radius).
    pub airways: Vec<(P3, P3, f64)>,
    /// Central bronchi (main and lobar): (a, b, radius).
    pub central_bronchi: Vec<(P3, P3, f64)>,
}

impl Anatomy {
    pub fn empty(grid: Grid) -> Self {
        Anatomy {
            procedural: false,
            grid,
            lung_voxels: [Vec::new(), Vec::new()],
            depth: Vec::new(),
            lung_z: [(0.0, 0.0); 2],
            lung_y: [(0.0, 0.0); 2],
            lung_x: [(0.0, 0.0); 2],
            noise_sigma: 15.0,
            blur: true,
            body_ab: (0.0, 0.0),
            fat_mm: 0.0,
            cavity_ab: (0.0, 0.0),
            heart_c: [0.0; 3],
            heart_r: [0.0; 3],
            aorta: Vec::new(),
            coronaries: Vec::new(),
            spine_y: 0.0,
            vertebra_z: Vec::new(),
            ribs: Vec::new(),
            carina: [0.0; 3],
            hila: [[0.0; 3]; 2],
            esophagus: Vec::new(),
            domes: (0.0, 0.0),
            airways: Vec::new(),
            central_bronchi: Vec::new(),
        }
    }

    /// Diaphragm height under (x, y).
    pub fn diaphragm_z(&self, x: f64, y: f64) -> f64 {
        let (zr, zl) = self.domes;
        let (ac, bc) = self.cavity_ab;
        let post = clamp01(y / bc);
        let right = zr - 38.0 * ((x + 0.45 * ac) / (0.55 * ac)).powi(2) - 28.0 * post * post;
        let left = zl - 38.0 * ((x - 0.45 * ac) / (0.55 * ac)).powi(2) - 28.0 * post * post;
        right.max(left)
    }

    /// Lobe / segment phrase of a lung position, e.g. "lower lobe of the right lung".
    pub fn lobe(&self, p: P3, side: Side) -> String {
        let s = if side == Side::Left { 1 } else { 0 };
        let (z0, z1) = self.lung_z[s];
        let (y0, y1) = self.lung_y[s];
        let t = clamp01((p[1] - y0) / (y1 - y0).max(1.0));
        let h = clamp01((p[2] - z0) / (z1 - z0).max(1.0));
        let sw = side.word();
        if h < 0.06 + 0.58 * t {
            let seg = if t > 0.6 && h < 0.35 {
                "posterobasal segment of the "
            } else if h > 0.38 {
                "superior segment of the "
            } else if t < 0.4 {
                "anterobasal segment of the "
            } else {
                ""
            };
            return format!("{seg}lower lobe of the {sw} lung");
        }
        if h < 0.42 && t < 0.55 {
            return if side == Side::Right {
                "middle lobe of the right lung".into()
            } else {
                "lingular segment of the left lung upper lobe".into()
            };
        }
        let seg = if h > 0.82 {
            "apical segment of the "
        } else if t > 0.6 {
            "posterior segment of the "
        } else if t < 0.35 {
            "anterior segment of the "
        } else {
            ""
        };
        format!("{seg}upper lobe of the {sw} lung")
    }

    /// Finish the lung bookkeeping from the tissue map: voxel lists, extents, depth map.
    pub fn index_lungs(&mut self, c: &Canvas) {
        let g = c.grid;
        let mut lists = [Vec::new(), Vec::new()];
        let mut zr = [(f64::MAX, f64::MIN); 2];
        let mut yr = [(f64::MAX, f64::MIN); 2];
        let mut xr = [(f64::MAX, f64::MIN); 2];
        for (idx, &t) in c.tissue.iter().enumerate() {
            let s = match t {
                tissue::LUNG_R => 0,
                tissue::LUNG_L => 1,
                _ => continue,
            };
            lists[s].push(idx as u32);
            let p = g.world_of(idx);
            zr[s] = (zr[s].0.min(p[2]), zr[s].1.max(p[2]));
            yr[s] = (yr[s].0.min(p[1]), yr[s].1.max(p[1]));
            xr[s] = (xr[s].0.min(p[0]), xr[s].1.max(p[0]));
        }
        self.lung_voxels = lists;
        self.lung_z = zr;
        self.lung_y = yr;
        self.lung_x = xr;
        self.depth = depth_map(c);
    }
}

/// In-plane chamfer distance (mm) of each lung voxel to the nearest non-lung voxel.
pub fn depth_map(c: &Canvas) -> Vec<f32> {
    let g = c.grid;
    let [nx, ny, nz] = g.dims;
    let s = g.spacing[0] as f32;
    let dg = s * std::f32::consts::SQRT_2;
    let mut d = vec![0f32; g.len()];
    for k in 0..nz {
        let base = nx * ny * k;
        for (v, &t) in d[base..base + nx * ny].iter_mut().zip(&c.tissue[base..base + nx * ny]) {
            *v = if tissue::is_lung(t) { 1e6 } else { 0.0 };
        }
        // forward
        for j in 0..ny {
            for i in 0..nx {
                let idx = base + i + nx * j;
                if d[idx] == 0.0 {
                    continue;
                }
                let mut v = d[idx];
                if i == 0 || j == 0 || i == nx - 1 || j == ny - 1 {
                    v = v.min(s);
                }
                if i > 0 {
                    v = v.min(d[idx - 1] + s);
                }
                if j > 0 {
                    v = v.min(d[idx - nx] + s);
                    if i > 0 {
                        v = v.min(d[idx - nx - 1] + dg);
                    }
                    if i + 1 < nx {
                        v = v.min(d[idx - nx + 1] + dg);
                    }
                }
                d[idx] = v;
            }
        }
        for j in (0..ny).rev() {
            for i in (0..nx).rev() {
                let idx = base + i + nx * j;
                if d[idx] == 0.0 {
                    continue;
                }
                let mut v = d[idx];
                if i + 1 < nx {
                    v = v.min(d[idx + 1] + s);
                }
                if j + 1 < ny {
                    v = v.min(d[idx + nx] + s);
                    if i + 1 < nx {
                        v = v.min(d[idx + nx + 1] + dg);
                    }
                    if i > 0 {
                        v = v.min(d[idx + nx - 1] + dg);
                    }
                }
                d[idx] = v;
            }
        }
    }
    d
}

/// Rib test for a wall point at angle parameters: returns the rib's z centre when `z` is on it.
pub fn rib_centre(r: &Rib, phi: f64) -> f64 {
    // phi: 0 at the spine (posterior), π anterior.
    r.z0 - r.drop * (1.0 - phi.cos()) * 0.5
}

/// Angle from posterior (0) to anterior (π) of a point around the cavity, and side.
#[inline]
pub fn wall_angle(x: f64, y: f64, ac: f64, bc: f64) -> f64 {
    // atan2 of (|x|/ac, y/bc): posterior (y>0) → 0, anterior → π.
    (x.abs() / ac).atan2(y / bc)
}

/// Build the procedural anatomy. `want` tells which abnormalities will be drawn (the heart
/// size depends on cardiomegaly).
///
/// The steps draw from `rng` in a fixed order (the corpus of a seed must not change): the
/// noise level, the body measures, the heart's fat, the airway wall, the lymph nodes, the lung
/// trees.
pub fn build(rng: &mut Rng, want: &[bool; N_LABELS]) -> (Canvas, Anatomy) {
    let grid = Grid::centred([0.0, 0.0, 0.0]);
    let mut c = Canvas::new(grid);
    let mut an = Anatomy::empty(grid);
    an.procedural = true;
    an.noise_sigma = rng.range(10.0, 24.0);
    let body = draw_body(rng, want, &mut an);
    paint_torso(&mut c, &an, &body);
    paint_heart(rng, &mut c, &body);
    let hila = paint_great_vessels(&mut c, &mut an, &body);
    let main_bronchi = paint_central_airways(rng, &mut c, &mut an, &body);
    paint_lymph_nodes(rng, &mut c, &body);
    paint_lung_trees(rng, &mut c, &mut an, &body, hila, main_bronchi);
    an.coronaries = coronary_paths(body.heart_c, body.heart_r);
    an.index_lungs(&c);
    (c, an)
}

/// The measures drawn for one body: outline, cavity, densities, heart, ribs and vertebrae.
struct Body {
    /// Semi-axes of the body outline (mm).
    a: f64,
    b: f64,
    /// Subcutaneous fat thickness (mm).
    fat: f64,
    /// Semi-axes of the thoracic cavity (mm).
    ac: f64,
    bc: f64,
    spine_y: f64,
    /// Left diaphragm dome top and the mean of both domes (z mm).
    zl_top: f64,
    zd_mid: f64,
    /// Lung apex height (z mm).
    apex: f64,
    lung_hu: f64,
    fat_hu: f64,
    muscle_hu: f64,
    liver_hu: f64,
    carina_z: f64,
    heart_c: P3,
    heart_r: P3,
    ribs: Vec<Rib>,
    /// Vertebral body + disc height and the lower ends of the bodies (z mm).
    vh: f64,
    vz: Vec<f64>,
}

/// Draw the body outline, cavity, densities, heart size and position, ribs and vertebrae;
/// record them in `an`.
fn draw_body(rng: &mut Rng, want: &[bool; N_LABELS], an: &mut Anatomy) -> Body {
    let a = rng.range(138.0, 165.0);
    let b = rng.range(98.0, 122.0);
    let fat = rng.range(5.0, 18.0);
    let muscle = rng.range(6.0, 11.0);
    let ac = a - fat - muscle - 12.0;
    let bc = b - fat - muscle - 12.0;
    an.body_ab = (a, b);
    an.fat_mm = fat;
    an.cavity_ab = (ac, bc);
    let spine_y = bc - 28.0;
    an.spine_y = spine_y;
    let zr_top = rng.range(-100.0, -75.0);
    let zl_top = zr_top - rng.range(4.0, 18.0);
    an.domes = (zr_top, zl_top);
    let apex = rng.range(128.0, 145.0);
    let lung_hu = rng.range(-885.0, -835.0);
    let fat_hu = rng.range(-110.0, -85.0);
    let muscle_hu = rng.range(38.0, 55.0);
    let liver_hu = rng.range(50.0, 65.0);
    let carina_z = rng.range(22.0, 40.0);
    let cardio = want[lab::CARDIOMEGALY];
    let hs = if cardio { rng.range(1.28, 1.42) } else { rng.range(0.9, 1.04) };
    let heart_r =
        [ac * rng.range(0.41, 0.45) * hs, bc * rng.range(0.5, 0.56) * hs.powf(0.7), rng.range(40.0, 46.0) * (1.0 + 0.5 * (hs - 1.0))];
    let zd_mid = 0.5 * (zr_top + zl_top);
    let heart_c = [rng.range(10.0, 20.0) + 0.25 * (heart_r[0] - 0.43 * ac), -0.30 * bc, zd_mid + 0.62 * heart_r[2]];
    an.heart_c = heart_c;
    an.heart_r = heart_r;
    // ribs: posterior heights every ~24 mm
    let rib_gap = rng.range(22.0, 26.0);
    let top_rib = apex + 5.0;
    let mut ribs = Vec::new();
    for n in 0..13 {
        ribs.push(Rib { z0: top_rib - n as f64 * rib_gap, drop: rng.range(55.0, 75.0) });
    }
    an.ribs = ribs.clone();
    // vertebrae: bodies of ~24 mm with ~6 mm discs
    let vh = rng.range(26.0, 31.0);
    let vphase = rng.range(0.0, vh);
    let mut vz = Vec::new();
    let mut z = -170.0 + vphase;
    while z < 170.0 {
        vz.push(z);
        z += vh;
    }
    an.vertebra_z = vz.clone();
    Body {
        a,
        b,
        fat,
        ac,
        bc,
        spine_y,
        zl_top,
        zd_mid,
        apex,
        lung_hu,
        fat_hu,
        muscle_hu,
        liver_hu,
        carina_z,
        heart_c,
        heart_r,
        ribs,
        vh,
        vz,
    }
}

/// What changes per axial slice: the outline (narrowing towards the neck), the lung taper
/// towards the apex and the vertebral level.
struct Slice {
    z: f64,
    /// Semi-axes of the body outline at this height.
    ab: f64,
    bb: f64,
    lung_taper: f64,
    /// Position within the vertebral body/disc cycle.
    vpos: f64,
    in_disc: bool,
}

impl Slice {
    fn at(body: &Body, z: f64) -> Slice {
        let neck = smoothstep(105.0, 160.0, z);
        let ab = body.a * (1.0 - 0.38 * neck);
        let bb = body.b * (1.0 - 0.2 * neck);
        let apex = body.apex;
        let lung_taper = if z > 40.0 { (1.0 - ((z - 40.0) / (apex - 40.0)).powi(2)).max(0.0).sqrt() } else { 1.0 };
        // vertebral level: position within the body/disc cycle
        let vpos = body.vz.iter().map(|&v| z - v).filter(|d| *d >= 0.0).fold(f64::MAX, f64::min);
        let in_disc = vpos > body.vh - 6.0;
        Slice { z, ab, bb, lung_taper, vpos, in_disc }
    }
}

/// Body outline and the CT table, body wall, lungs, mediastinal fat, upper abdomen, ribs,
/// sternum and spine, slice by slice.
fn paint_torso(c: &mut Canvas, an: &Anatomy, body: &Body) {
    let g = c.grid;
    let [nx, ny, nz] = g.dims;
    for k in 0..nz {
        let s = Slice::at(body, g.origin[2] + k as f64 * g.spacing[2]);
        for j in 0..ny {
            let y = g.origin[1] + j as f64 * g.spacing[1];
            for i in 0..nx {
                let x = g.origin[0] + i as f64 * g.spacing[0];
                let idx = i + nx * (j + ny * k);
                let eb = (x / s.ab).powi(2) + (y / s.bb).powi(2);
                if eb > 1.0 {
                    // outside: air, and the CT table under the patient
                    if y > s.bb + 12.0 && y < s.bb + 20.0 && x.abs() < 175.0 {
                        c.hu[idx] = -300.0;
                        c.tissue[idx] = tissue::MUSCLE;
                    }
                    continue;
                }
                let (t, h) = soft_tissue(an, body, &s, x, y, eb);
                let (t, h) = bone(body, &s, x, y, t, h);
                c.tissue[idx] = t;
                c.hu[idx] = h as f32;
            }
        }
    }
}

/// Tissue and HU inside the body outline before the bones: fat, muscle and skin of the wall;
/// in the cavity the abdomen under the diaphragm, the lungs and the mediastinal fat.
fn soft_tissue(an: &Anatomy, body: &Body, s: &Slice, x: f64, y: f64, eb: f64) -> (u8, f64) {
    let (ac, bc, fat) = (body.ac, body.bc, body.fat);
    let am = s.ab - fat;
    let bm = s.bb - fat * 0.8;
    let em = (x / am).powi(2) + (y / bm).powi(2);
    let (mut t, mut h) = if em > 1.0 { (tissue::FAT, body.fat_hu) } else { (tissue::MUSCLE, body.muscle_hu) };
    // skin
    if eb > (1.0 - 2.5 / s.ab.min(s.bb)).powi(2) {
        t = tissue::MUSCLE;
        h = 20.0;
    }
    let ec = (x / ac).powi(2) + (y / bc).powi(2);
    // spine and paraspinal muscles
    let dy = y - body.spine_y;
    let paraspinal = x.abs() < 58.0 && dy > 4.0;
    let vert_wide = (x / 27.0).powi(2) + (dy / 23.0).powi(2) <= 1.0;
    let z = s.z;
    if ec <= 1.0 && !paraspinal && !vert_wide {
        let zd = an.diaphragm_z(x, y);
        if z < zd {
            t = tissue::ABDOMEN;
            h = body.liver_hu;
            if x > 12.0 {
                // stomach (anterior) and spleen (posterior) on the left
                if y > 0.25 * bc && x > 0.35 * ac {
                    h = body.liver_hu - 8.0;
                } else {
                    h = 32.0;
                    let sc = [0.5 * ac, -0.15 * bc, body.zl_top - 22.0];
                    let d = ((x - sc[0]).powi(2) + (y - sc[1]).powi(2) + (z - sc[2]).powi(2)).sqrt();
                    if d < 24.0 && y < sc[1] + 4.0 {
                        h = -1000.0; // gas bubble (supine: anterior)
                    }
                }
            }
        } else if ec <= s.lung_taper * s.lung_taper {
            let med_w = if y < -0.55 * bc { 12.0 } else { 24.0 };
            if (x - 3.0).abs() < med_w {
                t = tissue::MEDIASTINUM;
                h = body.fat_hu;
            } else {
                t = if x >= 0.0 { tissue::LUNG_L } else { tissue::LUNG_R };
                // dependent density gradient
                h = body.lung_hu + 45.0 * clamp01((y + bc) / (2.0 * bc)).powi(2);
            }
        } else {
            t = tissue::MUSCLE;
            h = body.muscle_hu - 5.0;
        }
    } else if ec <= 1.0 && (paraspinal || vert_wide) {
        t = tissue::MUSCLE;
        h = body.muscle_hu;
    }
    (t, h)
}

/// Bones over the soft tissue `(t, h)`: ribs in the ring just outside the cavity, sternum,
/// vertebral body and disc, canal, arch and processes.
fn bone(body: &Body, s: &Slice, x: f64, y: f64, t: u8, h: f64) -> (u8, f64) {
    let (mut t, mut h) = (t, h);
    let (ac, bc, spine_y, z) = (body.ac, body.bc, body.spine_y, s.z);
    let ec = (x / ac).powi(2) + (y / bc).powi(2);
    let er = (x / (ac + 11.0)).powi(2) + (y / (bc + 11.0)).powi(2);
    let dy = y - spine_y;
    let vert = (x / 19.0).powi(2) + (dy / 16.0).powi(2) <= 1.0;
    // ribs in the ring just outside the cavity
    if ec > 1.0 && er <= 1.0 {
        let phi = wall_angle(x, y, ac, bc);
        for r in &body.ribs {
            let zc = rib_centre(r, phi);
            if (z - zc).abs() < 5.5 {
                t = tissue::BONE;
                // costal cartilage anteriorly
                h = if phi > 2.6 { 140.0 } else { 520.0 };
                break;
            }
        }
    }
    // sternum
    if x.abs() < 17.0 && y < -bc + 2.0 && y > -bc - 11.0 && z > -55.0 && z < 110.0 {
        t = tissue::BONE;
        h = if y < -bc - 8.5 || y > -bc - 0.5 { 650.0 } else { 260.0 };
    }
    // vertebra: body (cortex + cancellous), disc, canal, arch, processes
    if vert {
        t = tissue::BONE;
        let inner = (x / 16.5).powi(2) + (dy / 13.5).powi(2) <= 1.0;
        h = if s.in_disc {
            85.0
        } else if inner {
            230.0
        } else {
            700.0
        };
    }
    let cy = spine_y + 26.0;
    let dc = (x * x + (y - cy).powi(2)).sqrt();
    if !s.in_disc || dc < 9.0 {
        if dc < 8.5 {
            t = tissue::CANAL;
            h = 18.0;
        } else if dc < 15.0 && y > spine_y + 12.0 {
            t = tissue::BONE;
            h = 520.0;
        } else if (x.abs() < 5.0 && y > cy && y < cy + 38.0)
            || ((y - (cy - 4.0)).abs() < 4.0 && x.abs() < 32.0 && x.abs() > 8.0 && s.vpos < 8.0)
        {
            // spinous process, transverse processes
            t = tissue::BONE;
            h = 480.0;
        }
    }
    (t, h)
}

/// Paint a mediastinal tube through `pts` (centre, radius) with `hu` and tissue `t`; its fat
/// margin carves lung into mediastinal fat of `fat_hu`.
fn tube(c: &mut Canvas, pts: &[(P3, f64)], hu: f32, t: u8, fat_margin: f64, fat_hu: f64) {
    for w in pts.windows(2) {
        let ((pa, ra), (pb, rb)) = (w[0], w[1]);
        for_segment(c, pa, pb, ra, rb, fat_margin, |c, idx, sd, _| {
            let cur = c.tissue[idx];
            if cur == tissue::BONE || cur == tissue::CANAL || cur == tissue::OUT {
                return;
            }
            if sd < 0.0 {
                let cov = coverage(sd) as f32;
                if cur == t {
                    c.hu[idx] = c.hu[idx].max(c.hu[idx] + (hu - c.hu[idx]) * cov);
                } else {
                    c.hu[idx] += (hu - c.hu[idx]) * cov;
                }
                if cov > 0.5 {
                    c.tissue[idx] = t;
                }
            } else if tissue::is_lung(cur) {
                c.tissue[idx] = tissue::MEDIASTINUM;
                c.hu[idx] = fat_hu as f32;
            }
        });
    }
}

/// The heart with epicardial fat, painted before the tubes that go over it.
fn paint_heart(rng: &mut Rng, c: &mut Canvas, body: &Body) {
    let (sy, fat_hu) = (body.spine_y, body.fat_hu);
    let (hc, hr) = (body.heart_c, body.heart_r);
    let fatw = rng.range(3.0, 7.0);
    for_box(c, sub(hc, add(hr, [fatw + 3.0; 3])), add(hc, add(hr, [fatw + 3.0; 3])), |c, idx, p| {
        let q = [(p[0] - hc[0]) / hr[0], (p[1] - hc[1]) / hr[1], (p[2] - hc[2]) / hr[2]];
        let r = norm(q);
        let cur = c.tissue[idx];
        if !(tissue::is_lung(cur) || cur == tissue::MEDIASTINUM || cur == tissue::ABDOMEN || cur == tissue::MUSCLE && p[1] < sy - 20.0) {
            return;
        }
        if cur == tissue::ABDOMEN && p[2] < hc[2] - 0.85 * hr[2] {
            return;
        }
        let rmin = hr[0].min(hr[1]).min(hr[2]);
        let sd = (r - 1.0) * rmin;
        if sd < 0.0 {
            c.tissue[idx] = tissue::HEART;
            c.hu[idx] = 42.0;
        } else if sd < fatw && cur != tissue::ABDOMEN {
            c.tissue[idx] = tissue::MEDIASTINUM;
            c.hu[idx] = fat_hu as f32;
        }
    });
}

/// Aorta, pulmonary trunk and arteries, SVC, arch branches and the oesophagus; records them
/// in `an` and returns the hila [right, left].
fn paint_great_vessels(c: &mut Canvas, an: &mut Anatomy, body: &Body) -> [P3; 2] {
    let (bc, cz, sy, zd_mid, fat_hu) = (body.bc, body.carina_z, body.spine_y, body.zd_mid, body.fat_hu);
    let (hc, hr) = (body.heart_c, body.heart_r);
    let root = [hc[0] - 0.35 * hr[0], hc[1] + 0.2 * hr[1], hc[2] + 0.55 * hr[2]];
    let aorta = vec![
        (root, 14.0),
        ([-14.0, -0.22 * bc - 4.0, cz + 14.0], 15.5),
        ([-3.0, -0.2 * bc, cz + 34.0], 14.5),
        ([20.0, 0.0, cz + 38.0], 13.5),
        ([24.0, sy - 12.0, cz + 24.0], 12.5),
        ([22.0, sy - 10.0, cz - 20.0], 12.0),
        ([15.0, sy - 12.0, zd_mid - 10.0], 11.0),
        ([6.0, sy - 18.0, -175.0], 10.5),
    ];
    tube(c, &aorta, 42.0, tissue::VESSEL, 4.0, fat_hu);
    an.aorta = aorta;
    // pulmonary trunk and arteries
    let pt0 = [hc[0] - 0.05 * hr[0], hc[1] - 0.35 * hr[1], hc[2] + 0.6 * hr[2]];
    let pt1 = [10.0, -0.12 * bc, cz - 6.0];
    tube(c, &[(pt0, 13.0), (pt1, 12.5)], 40.0, tissue::VESSEL, 3.0, fat_hu);
    let hil_r = [-40.0, sy - 38.0, cz - 18.0];
    let hil_l = [42.0, sy - 34.0, cz - 22.0];
    an.hila = [hil_r, hil_l];
    tube(c, &[(pt1, 11.0), ([-34.0, sy - 44.0, cz - 14.0], 9.0)], 40.0, tissue::VESSEL, 2.0, fat_hu);
    tube(c, &[(pt1, 11.0), ([38.0, sy - 40.0, cz - 14.0], 9.0)], 40.0, tissue::VESSEL, 2.0, fat_hu);
    // SVC and arch branches
    tube(c, &[([-24.0, -0.2 * bc, 160.0], 9.0), ([-22.0, -0.12 * bc, root[2]], 9.5)], 40.0, tissue::VESSEL, 3.0, fat_hu);
    tube(c, &[([-4.0, -0.18 * bc, cz + 38.0], 6.5), ([-14.0, -0.1 * bc, 165.0], 6.0)], 42.0, tissue::VESSEL, 3.0, fat_hu);
    tube(c, &[([7.0, -0.12 * bc, cz + 40.0], 4.5), ([9.0, -0.05 * bc, 165.0], 4.5)], 42.0, tissue::VESSEL, 3.0, fat_hu);
    tube(c, &[([17.0, -0.03 * bc, cz + 39.0], 5.0), ([32.0, 0.0, 165.0], 5.0)], 42.0, tissue::VESSEL, 3.0, fat_hu);
    // oesophagus (collapsed, a little air)
    let eso = vec![
        ([5.0, sy - 24.0, 170.0], 7.0),
        ([7.0, sy - 22.0, cz], 7.0),
        ([12.0, sy - 26.0, zd_mid + 5.0], 7.5),
        ([40.0, -0.1 * bc, body.zl_top - 25.0], 9.0),
    ];
    tube(c, &eso, 38.0, tissue::MEDIASTINUM, 3.0, fat_hu);
    an.esophagus = eso;
    [hil_r, hil_l]
}

/// Trachea and main bronchi (air lumen, thin wall); records the carina and the central
/// bronchi in `an` and returns the main bronchi's ends [right, left].
fn paint_central_airways(rng: &mut Rng, c: &mut Canvas, an: &mut Anatomy, body: &Body) -> [P3; 2] {
    let (cz, sy, fat_hu) = (body.carina_z, body.spine_y, body.fat_hu);
    let carina = [0.0, sy - 38.0, cz];
    an.carina = carina;
    let wall = rng.range(1.5, 2.2);
    let airway = |c: &mut Canvas, a: P3, b: P3, r: f64, fat_margin: f64| {
        for_segment(c, a, b, r + wall, r + wall, fat_margin, |c, idx, sd, _| {
            let cur = c.tissue[idx];
            if cur == tissue::BONE || cur == tissue::OUT || cur == tissue::CANAL {
                return;
            }
            if sd < -wall {
                let cov = coverage(sd + wall) as f32;
                c.hu[idx] += (-1000.0 - c.hu[idx]) * cov;
                c.tissue[idx] = tissue::AIRWAY;
            } else if sd < 0.0 {
                c.hu[idx] = c.hu[idx].max(30.0);
                c.tissue[idx] = tissue::MEDIASTINUM;
            } else if tissue::is_lung(cur) && fat_margin > 0.0 {
                c.tissue[idx] = tissue::MEDIASTINUM;
                c.hu[idx] = fat_hu as f32;
            }
        });
    };
    airway(c, [0.0, sy - 44.0, 175.0], carina, 8.0, 3.0);
    let rmb = [-30.0, sy - 36.0, cz - 14.0];
    let lmb = [34.0, sy - 32.0, cz - 20.0];
    airway(c, carina, rmb, 6.0, 2.0);
    airway(c, carina, lmb, 5.5, 2.0);
    an.central_bronchi = vec![(carina, rmb, 6.0), (carina, lmb, 5.5)];
    [rmb, lmb]
}

/// Mediastinal lymph nodes of normal size (< 8 mm).
fn paint_lymph_nodes(rng: &mut Rng, c: &mut Canvas, body: &Body) {
    let (bc, cz, sy) = (body.bc, body.carina_z, body.spine_y);
    for _ in 0..rng.int(2, 5) {
        let p = [rng.range(-18.0, 10.0), rng.range(-0.3 * bc, sy - 30.0), rng.range(cz - 10.0, cz + 45.0)];
        let r = rng.range(2.5, 3.8);
        for_box(c, sub(p, [r + 3.0; 3]), add(p, [r + 3.0; 3]), |c, idx, q| {
            if c.tissue[idx] == tissue::MEDIASTINUM && norm(sub(q, p)) < r {
                c.hu[idx] = 38.0;
            }
        });
    }
}

/// Lung vessels and airways: branching trees grown from the hila, painted into the lungs;
/// records the airway segments and the lobar bronchi in `an`.
fn paint_lung_trees(rng: &mut Rng, c: &mut Canvas, an: &mut Anatomy, body: &Body, hila: [P3; 2], main_bronchi: [P3; 2]) {
    let (ac, bc, cz, zd_mid, apex) = (body.ac, body.bc, body.carina_z, body.zd_mid, body.apex);
    let [rmb, lmb] = main_bronchi;
    let mut segs: Vec<(P3, P3, f64, bool)> = Vec::new(); // (a, b, radius, is_airway)
    for (s, hil) in hila.into_iter().enumerate() {
        let sx = if s == 0 { -1.0 } else { 1.0 };
        let targets: [P3; 6] = [
            [sx * 0.5 * ac, -0.1 * bc, apex - 25.0],
            [sx * 0.55 * ac, -0.6 * bc, cz - 5.0],
            [sx * 0.85 * ac, 0.0, cz - 10.0],
            [sx * 0.5 * ac, 0.65 * bc, cz - 20.0],
            [sx * 0.6 * ac, 0.4 * bc, zd_mid - 10.0],
            [sx * 0.65 * ac, -0.35 * bc, zd_mid + 5.0],
        ];
        for (ti, tgt) in targets.iter().enumerate() {
            let dir = unit(sub(*tgt, hil));
            let len = norm(sub(*tgt, hil));
            grow(rng, &mut segs, hil, dir, len * 0.32, 4.8, 0, false);
            let jd = unit(add(dir, scale(rng.unit(), 0.35)));
            grow(rng, &mut segs, add(hil, [0.0, -4.0, 6.0]), jd, len * 0.3, 4.0, 0, false);
            // a second (venous) tree slightly offset, and bronchi along three of the arteries
            let off = add(hil, [0.0, 8.0, -12.0]);
            grow(rng, &mut segs, off, unit(sub(*tgt, off)), len * 0.3, 4.2, 0, false);
            if ti % 2 == 0 || ti == 3 {
                let start = add(hil, [sx * 4.0, 4.0, 2.0]);
                grow(rng, &mut segs, start, dir, len * 0.3, 3.6, 0, true);
            }
        }
        // lobar bronchi for the central list
        an.central_bronchi.push((if s == 0 { rmb } else { lmb }, add(hil, [sx * 10.0, 0.0, -14.0]), 4.5));
    }
    for (a0, b0, r, is_air) in &segs {
        let (a0, b0, r) = (*a0, *b0, *r);
        if *is_air {
            an.airways.push((a0, b0, r));
            let w = (0.22 * r).max(0.8);
            for_segment(c, a0, b0, r + w, r + w, 0.0, |c, idx, sd, _| {
                if !tissue::is_lung(c.tissue[idx]) {
                    return;
                }
                if sd < -w {
                    let cov = coverage(sd + w) * (2.0 * r / 3.0).min(1.0);
                    c.hu[idx] += (-990.0 - c.hu[idx]) * cov as f32;
                } else {
                    let cov = (coverage(sd) * (w / 1.4).min(1.0) * 0.8) as f32;
                    c.hu[idx] += (20.0 - c.hu[idx]) * cov;
                }
            });
        } else {
            for_segment(c, a0, b0, r, r, 0.0, |c, idx, sd, _| {
                if !tissue::is_lung(c.tissue[idx]) {
                    return;
                }
                let cov = (coverage(sd) * (2.0 * r / 3.2).min(1.0)) as f32;
                let v = c.hu[idx] + (40.0 - c.hu[idx]) * cov;
                c.hu[idx] = c.hu[idx].max(v);
            });
        }
    }
}

/// Recursive branching tree: segments of length `len`, radius `r`, children bend by up to ~35°.
#[allow(clippy::too_many_arguments)]
fn grow(rng: &mut Rng, out: &mut Vec<(P3, P3, f64, bool)>, from: P3, dir: P3, len: f64, r: f64, gen: usize, air: bool) {
    let to = add(from, scale(dir, len));
    out.push((from, to, r, air));
    let max_gen = if air { 3 } else { 5 };
    if gen >= max_gen || r < 0.9 {
        return;
    }
    let kids = if gen < 2 { 2 } else { rng.int(2, 4) };
    for _ in 0..kids {
        let jitter = rng.unit();
        let nd = unit(add(dir, scale(jitter, 0.65)));
        let (fl, fr) = (rng.range(0.62, 0.8), rng.range(0.68, 0.78));
        grow(rng, out, to, nd, len * fl, r * fr, gen + 1, air);
    }
}

/// Coronary artery courses over the heart surface: RCA (right AV groove), LAD (anterior
/// interventricular groove), LCx (left AV groove).
fn coronary_paths(hc: P3, hr: P3) -> Vec<Vec<P3>> {
    let on = |u: P3| -> P3 {
        let u = unit(u);
        [hc[0] + 1.02 * hr[0] * u[0], hc[1] + 1.02 * hr[1] * u[1], hc[2] + 1.02 * hr[2] * u[2]]
    };
    let mut paths = Vec::new();
    let mut rca = Vec::new();
    let mut lad = Vec::new();
    let mut lcx = Vec::new();
    for n in 0..10 {
        let t = n as f64 / 9.0;
        rca.push(on([-0.7 + 0.2 * t, -0.6 + 0.9 * t, 0.35 - 0.6 * t]));
        lad.push(on([0.1 + 0.5 * t, -0.85, 0.5 - 0.9 * t]));
        lcx.push(on([0.5 + 0.3 * t, -0.3 + 0.8 * t, 0.5 - 0.3 * t]));
    }
    paths.push(rca);
    paths.push(lad);
    paths.push(lcx);
    paths
}

/// Partial-volume blur, quantum noise and the int16 cast.
pub fn finish(c: &Canvas, an: &Anatomy, rng: &mut Rng) -> Vec<i16> {
    let g = c.grid;
    let [nx, ny, nz] = g.dims;
    let mut v = c.hu.clone();
    if an.blur {
        let (kx, kz) = (0.1f32, 0.08f32);
        let mut tmp = v.clone();
        // x
        for row in 0..ny * nz {
            let b = row * nx;
            for i in 1..nx - 1 {
                tmp[b + i] = kx * v[b + i - 1] + (1.0 - 2.0 * kx) * v[b + i] + kx * v[b + i + 1];
            }
        }
        // y
        for k in 0..nz {
            for j in 1..ny - 1 {
                let b = nx * (j + ny * k);
                for i in 0..nx {
                    v[b + i] = kx * tmp[b + i - nx] + (1.0 - 2.0 * kx) * tmp[b + i] + kx * tmp[b + i + nx];
                }
            }
        }
        // z
        tmp.copy_from_slice(&v);
        let sl = nx * ny;
        for k in 1..nz - 1 {
            for idx in k * sl..(k + 1) * sl {
                v[idx] = kz * tmp[idx - sl] + (1.0 - 2.0 * kz) * tmp[idx] + kz * tmp[idx + sl];
            }
        }
    }
    let sigma = an.noise_sigma as f32;
    let mut out = Vec::with_capacity(v.len());
    let mut bits = 0u64;
    let mut left = 0;
    for (idx, &x) in v.iter().enumerate() {
        // Irwin–Hall of 4 × 16-bit uniforms ≈ normal (variance 1/3 → scale by √3)
        if left == 0 {
            bits = rng.u64();
            left = 1;
        }
        left -= 1;
        let s = ((bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) + (bits >> 48)) as f32 / 65536.0 - 2.0;
        let outside = c.tissue[idx] == tissue::OUT;
        let n = s * 1.732 * if outside { sigma * 0.6 } else { sigma };
        out.push((x + n).round().clamp(-1024.0, 3071.0) as i16);
    }
    out
}
