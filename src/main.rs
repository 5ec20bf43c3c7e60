fn main() {
    println!("deployer");
}
